//! IP bans for guests, for admins: the JSON API under `/api/v1/admin/ip-bans` (bearer tokens of
//! admin sessions) and the page `/admin/ip-bans` (the `rm_admin` cookie; a form to ban, a lift
//! button per ban, usable without JavaScript).
//!
//! Thin: parses, checks the admin, calls `app.ip_bans`, renders.
//! Calls: admin's IP bans and reasons; auth, csrf, admin layout, error, account pages' helpers.

use std::sync::Arc;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::admin::ip_bans;
use crate::admin::{self as admin_rules, required_reason, SignedAdmin};
use crate::app::App;
use crate::calendar::moment;
use crate::i18n::Lang;
use crate::model::{IpBan, IpBanId};
use crate::store::unix_now;

use super::account_pages::{page, see_other, PageForm};
use super::admin_pages::AdminLayout;
use super::admin_pages::ReasonForm;
use super::admin_users::ban_end_label;
use super::auth::{AdminApi, AdminPage, ClientIp};
use super::csrf::Csrf;
use super::error::{ApiError, PageError};
use super::json::ApiJson;
use super::pages::Speaks as _;
use super::path::ApiPath;
use super::records::Query;

const PAGE_PATH: &str = "/admin/ip-bans";

#[derive(Serialize)]
pub struct IpBanView {
    id: IpBanId,
    range: String,
    reason: String,
    /// Unix seconds; `null`: until lifted.
    until: Option<u64>,
    created_at: u64,
    admin: String,
    lifted_at: Option<u64>,
    in_force: bool,
}

impl IpBanView {
    fn of(ban: IpBan, now: u64) -> Self {
        IpBanView {
            in_force: ban.in_force(now),
            id: ban.id,
            range: ban.range.into(),
            reason: ban.reason,
            until: ban.expires_at,
            created_at: ban.created_at,
            admin: ban.admin,
            lifted_at: ban.lifted_at,
        }
    }
}

#[derive(Serialize)]
pub struct IpBanList {
    bans: Vec<IpBanView>,
}

/// `GET /api/v1/admin/ip-bans` → `{"bans":[…]}`, newest first, in force or not.
pub async fn list(State(app): State<Arc<App>>, _: AdminApi) -> Result<Json<IpBanList>, ApiError> {
    let now = unix_now();
    let bans = app.ip_bans.all().await?;
    Ok(Json(IpBanList {
        bans: bans.into_iter().map(|b| IpBanView::of(b, now)).collect(),
    }))
}

#[derive(Deserialize)]
pub struct AddBody {
    range: String,
    reason: String,
    /// Unix seconds; absent for a ban until lifted.
    until: Option<u64>,
}

/// `POST /api/v1/admin/ip-bans` `{"range","reason","until"?}` → 201 with the ban; guests in
/// rooms from the range leave them at once.
pub async fn add(
    State(app): State<Arc<App>>,
    AdminApi(admin): AdminApi,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<AddBody>,
) -> Result<(StatusCode, Json<IpBanView>), ApiError> {
    let reason = required_reason(&body.reason)?;
    let ban = app
        .ip_bans
        .add(&body.range, reason, body.until, &admin, ip)
        .await?;
    Ok((StatusCode::CREATED, Json(IpBanView::of(ban, unix_now()))))
}

/// `DELETE /api/v1/admin/ip-bans/{id}[?reason=…]` → 204: lifted, kept in the history.
pub async fn lift(
    State(app): State<Arc<App>>,
    AdminApi(admin): AdminApi,
    ClientIp(ip): ClientIp,
    ApiPath(id): ApiPath<u64>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    let query = Query::of(raw);
    let reason = admin_rules::reason(query.get("reason").unwrap_or_default())?;
    app.ip_bans.lift(IpBanId(id), &reason, &admin, ip).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- the page ----

/// A ban as the page's tables show it.
struct BanRow {
    id: IpBanId,
    range: String,
    reason: String,
    admin: String,
    since: String,
    until: String,
    /// For the history: when and how it ended.
    ended: String,
}

impl BanRow {
    fn of(ban: &IpBan, now: u64, lang: Lang) -> Self {
        let when = |at| lang.moment(&moment(at));
        let ended = match (ban.lifted_at, ban.expires_at) {
            (Some(at), _) => lang.fill("admin.ban.lifted_at", &[("when", &when(at))]),
            (None, Some(end)) if end <= now => {
                lang.fill("admin.ban.ran_out_at", &[("when", &when(end))])
            }
            _ => String::new(),
        };
        BanRow {
            id: ban.id,
            range: ban.range.into(),
            reason: ban.reason.clone(),
            admin: ban.admin.clone(),
            since: when(ban.created_at),
            until: ban_end_label(lang, ban.expires_at),
            ended,
        }
    }
}

#[derive(Template)]
#[template(path = "admin/ip_bans.html")]
struct IpBansPage {
    layout: AdminLayout,
    in_force: Vec<BanRow>,
    history: Vec<BanRow>,
    error: Option<String>,
    /// The form's values after a refusal, so nothing typed is lost.
    range: String,
    reason: String,
    min_v4: u8,
    min_v6: u8,
}

/// What the add form sent, to show again after a refusal.
#[derive(Deserialize, Default)]
pub struct AddForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    range: String,
    #[serde(default)]
    reason: String,
    /// `1h`, `1d`, `7d`, `permanent` or `date`.
    #[serde(default)]
    expires: String,
    /// `YYYY-MM-DD`, with `expires=date`: the ban ends when that day (UTC) ends.
    #[serde(default)]
    date: String,
}

async fn render_page(
    app: &App,
    lang: Lang,
    csrf: &Csrf,
    admin: &SignedAdmin,
    status: StatusCode,
    refused: Option<(String, AddForm)>,
) -> Result<Response, PageError> {
    let now = unix_now();
    let bans = app.ip_bans.all().await.map_err(ApiError::from)?;
    let (in_force, history): (Vec<_>, Vec<_>) = bans.iter().partition(|b| b.in_force(now));
    let (error, form) = match refused {
        Some((message, form)) => (Some(message), form),
        None => (None, AddForm::default()),
    };
    let view = IpBansPage {
        layout: AdminLayout::new(lang, "admin.nav.ip_bans", csrf, Some(admin)),
        in_force: in_force
            .into_iter()
            .map(|b| BanRow::of(b, now, lang))
            .collect(),
        history: history
            .into_iter()
            .map(|b| BanRow::of(b, now, lang))
            .collect(),
        error,
        range: form.range,
        reason: form.reason,
        min_v4: ip_bans::MIN_V4_PREFIX,
        min_v6: ip_bans::MIN_V6_PREFIX,
    };
    Ok(page(app, csrf, status, &view))
}

/// `GET /admin/ip-bans`: the bans in force, the history, the form.
pub async fn ip_bans_page(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    lang: Lang,
    csrf: Csrf,
) -> Result<Response, PageError> {
    render_page(&app, lang, &csrf, &admin, StatusCode::OK, None).await
}

/// `POST /admin/ip-bans` (the form): `303` back to the page, or the page with the refusal.
pub async fn add_submit(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    ClientIp(ip): ClientIp,
    lang: Lang,
    csrf: Csrf,
    PageForm(form): PageForm<AddForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let added = async {
        let reason = required_reason(&form.reason)?;
        let until = crate::admin::ban_end(&form.expires, &form.date, unix_now())?;
        app.ip_bans
            .add(&form.range, reason, until, &admin, ip)
            .await
            .map_err(ApiError::from)
    }
    .await;
    match added {
        Ok(_) => Ok(see_other(PAGE_PATH, None)),
        Err(e) => {
            render_page(
                &app,
                lang,
                &csrf,
                &admin,
                e.status,
                Some((e.message_in(lang), form)),
            )
            .await
        }
    }
}

/// `POST /admin/ip-bans/{id}/lift`: `303` back to the page.
pub async fn lift_submit(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    ClientIp(ip): ClientIp,
    csrf: Csrf,
    ApiPath(id): ApiPath<u64>,
    PageForm(form): PageForm<ReasonForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let reason = admin_rules::reason(&form.reason).map_err(ApiError::from)?;
    app.ip_bans
        .lift(IpBanId(id), &reason, &admin, ip)
        .await
        .map_err(ApiError::from)?;
    Ok(see_other(PAGE_PATH, None))
}
