//! The admin's recordings page (`/admin/records`): every recording with the catalogue's search,
//! sort and paging, its host, length and views, and a delete form (the admin's delete of
//! `DELETE /api/v1/records/{id}`, audited with an optional reason).
//!
//! Thin: parses, calls `app.records` (the delete: `app.moderation`), renders. Calls: records;
//! admin's moderation; auth, csrf, admin layout, error.

use std::sync::Arc;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use crate::admin::moderation::Acting;
use crate::app::App;
use crate::i18n::Lang;
use crate::model::RecordId;
use crate::records::parse_order;
use crate::store::Listed;

use super::account_pages::{page, see_other, PageForm};
use super::admin_pages::ReasonForm;
use super::admin_pages::{AdminLayout, AdminPager};
use super::admin_stats::moment;
use super::auth::{AdminPage, ClientIp};
use super::csrf::Csrf;
use super::error::{ApiError, PageError};
use super::pages::Speaks as _;
use super::path::ApiPath;
use super::records::Query;

/// A listed recording with what the page shows of it.
struct RecordRow {
    id: RecordId,
    title: String,
    /// The host's username (or nickname), and id when the account still exists.
    host: Option<(u64, String)>,
    started: String,
    duration: String,
    views: u64,
}

impl RecordRow {
    fn of(listed: Listed) -> Self {
        let record = listed.record;
        let secs = record.duration_secs;
        RecordRow {
            id: record.id,
            title: record.title,
            host: listed.host.map(|user| {
                let name = user.username.unwrap_or(user.nickname);
                (user.id.0, name)
            }),
            started: moment(record.started_at),
            duration: format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
            views: record.views,
        }
    }
}

#[derive(Template)]
#[template(path = "admin/records.html")]
struct RecordsPage {
    layout: AdminLayout,
    q: String,
    sort: String,
    rows: Vec<RecordRow>,
    total: u64,
    pager: AdminPager,
    deleted: bool,
}

/// `GET /admin/records?q&sort&page&per_page`: every recording, or those the search finds.
pub async fn records_page(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    lang: Lang,
    csrf: Csrf,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let query = Query::of(raw);
    let paging = query.paging().map_err(ApiError::from)?;
    let given = |name: &str| query.get(name).unwrap_or_default().trim().to_owned();
    let (q, sort) = (given("q"), given("sort"));
    let order =
        parse_order(Some(sort.as_str()).filter(|s| !s.is_empty())).map_err(ApiError::from)?;
    let found = if q.is_empty() {
        app.records.list(order, None, paging).await
    } else {
        app.records.search(&q, order, paging).await
    }
    .map_err(ApiError::from)?;
    let rows: Vec<RecordRow> = found.records.into_iter().map(RecordRow::of).collect();
    let pager = AdminPager::new(
        "/admin/records",
        &[("q", &q), ("sort", &sort)],
        paging,
        rows.len(),
        found.total,
        (lang.t("admin.users.previous"), lang.t("admin.users.next")),
    );
    let view = RecordsPage {
        layout: AdminLayout::new(lang, "admin.nav.recordings", &csrf, Some(&admin)),
        q,
        sort,
        total: found.total,
        rows,
        pager,
        deleted: query.get("notice") == Some("deleted"),
    };
    Ok(page(&app, &csrf, StatusCode::OK, &view))
}

/// `POST /admin/records/{id}/delete` (a row's form): `303` back to the list.
pub async fn delete_submit(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    ClientIp(ip): ClientIp,
    csrf: Csrf,
    ApiPath(id): ApiPath<u64>,
    PageForm(form): PageForm<ReasonForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let by = Acting { admin: &admin, ip };
    app.moderation
        .delete_record(by, RecordId(id), &form.reason)
        .await
        .map_err(ApiError::from)?;
    Ok(see_other("/admin/records?notice=deleted", None))
}
