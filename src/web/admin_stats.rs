//! The admin's statistics and audit log, as JSON (`/api/v1/admin/stats/{section}`,
//! `/api/v1/admin/audit`, bearer tokens), as pages (`/admin/stats`, `/admin/audit`, the
//! `rm_admin` cookie) and as CSV from both (`?format=csv` on the API, `…/csv` links on the pages).
//!
//! Thin: parses the range and filters (`crate::stats`), reads the reports or the store, renders.
//! Calls: stats, store; auth, admin pages' layout, error.

use std::sync::Arc;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use crate::app::App;
use crate::i18n::Lang;
use crate::model::AuditEntry;
use crate::records::Paging;
use crate::stats::svg::{self, Kind, Point};
use crate::stats::{self, audit_filter, DayRange, Report, Section, StatsError, Table};
use crate::store::{unix_now, AuditFilter};

use super::account_pages::page;
use super::admin_pages::{AdminLayout, AdminPager};
use super::auth::{AdminApi, AdminPage};
use super::csrf::Csrf;
use super::error::{ApiError, PageError};
use super::pages::Speaks as _;
use super::path::ApiPath;
use super::records::Query;

/// What a request asks the answer to be.
#[derive(PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

fn format(query: &Query) -> Result<Format, StatsError> {
    match query.get("format") {
        None | Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(other) => Err(StatsError::InvalidQuery(format!(
            "`format` is json or csv; {other:?} is not"
        ))),
    }
}

/// A CSV download named `name` (made of dates and fixed words only, never of stored text).
fn csv_response(name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// The report a request names, for its range, with its table as CSV if asked.
async fn stats_answer(
    app: &App,
    section: &str,
    query: &Query,
    answer: Format,
) -> Result<Response, ApiError> {
    let section = Section::parse(section)?;
    let now = unix_now();
    let range = DayRange::parse(query.get("from"), query.get("to"), now)?;
    let report = stats::report(&app.store, section, range, now).await?;
    if answer == Format::Json {
        return Ok(Json(report).into_response());
    }
    let table = report.table(query.get("table"))?;
    let name = format!(
        "{}-{}-{}-to-{}",
        section.name(),
        table.name,
        range.from_label(),
        range.to_label()
    );
    Ok(csv_response(&name, table.csv()))
}

/// `GET /api/v1/admin/stats/{section}?from&to[&format=csv&table]`.
pub async fn stats_api(
    State(app): State<Arc<App>>,
    _: AdminApi,
    ApiPath(section): ApiPath<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::of(raw);
    let answer = format(&query)?;
    stats_answer(&app, &section, &query, answer).await
}

/// `GET /admin/stats/{section}/csv?from&to&table`: the pages' CSV links.
pub async fn stats_csv(
    State(app): State<Arc<App>>,
    _: AdminPage,
    ApiPath(section): ApiPath<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    Ok(stats_answer(&app, &section, &Query::of(raw), Format::Csv).await?)
}

/// A table on a page, with its caption in the reader's language and its CSV link (whose
/// header stays English: a spreadsheet's columns are names, not prose).
struct TableView {
    table: Table,
    caption: &'static str,
    csv_href: String,
}

/// One report on the page.
struct SectionView {
    title: &'static str,
    /// Inline `<svg>`, every text in it escaped by `stats::svg`.
    charts: Vec<String>,
    tables: Vec<TableView>,
}

#[derive(Template)]
#[template(path = "admin/stats.html")]
struct StatsPage {
    layout: AdminLayout,
    from: String,
    to: String,
    sections: Vec<SectionView>,
}

/// `GET /admin/stats?from&to`: every report of the range, charts and tables.
pub async fn stats_page(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    lang: Lang,
    csrf: Csrf,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let query = Query::of(raw);
    let now = unix_now();
    let range = DayRange::parse(query.get("from"), query.get("to"), now).map_err(ApiError::from)?;
    let (from, to) = (range.from_label(), range.to_label());
    let mut sections = Vec::new();
    for section in [Section::Logins, Section::Lives, Section::Records] {
        let report = stats::report(&app.store, section, range, now)
            .await
            .map_err(ApiError::from)?;
        let tables = report
            .tables()
            .into_iter()
            .map(|table| TableView {
                caption: lang.t(caption_key(section, table.name)),
                csv_href: format!(
                    "/admin/stats/{}/csv?from={from}&to={to}&table={}",
                    section.name(),
                    table.name
                ),
                table,
            })
            .collect();
        let (title, charts) = charts(&report, lang);
        sections.push(SectionView {
            title,
            charts,
            tables,
        });
    }
    let view = StatsPage {
        layout: AdminLayout::new(lang, "admin.nav.statistics", &csrf, Some(&admin)),
        from,
        to,
        sections,
    };
    Ok(page(&app, &csrf, StatusCode::OK, &view))
}

/// The catalogue key of a table's caption.
fn caption_key(section: Section, table: &str) -> &'static str {
    match (section, table) {
        (Section::Logins, "hours") => "admin.stats.logins_per_hour",
        (Section::Logins, _) => "admin.stats.logins_per_day_table",
        (Section::Lives, _) => "admin.stats.lives_per_day",
        (Section::Records, "top_views") => "admin.stats.top_by_views",
        (Section::Records, "top_watch_time") => "admin.stats.top_by_watch_time",
        (Section::Records, _) => "admin.stats.records_watched_per_day",
    }
}

/// A report's title and charts, in the reader's language.
fn charts(report: &Report, lang: Lang) -> (&'static str, Vec<String>) {
    fn series<T>(items: &[T], point: impl Fn(&T) -> (String, f64)) -> Vec<Point> {
        items
            .iter()
            .map(|item| {
                let (label, value) = point(item);
                Point { label, value }
            })
            .collect()
    }
    match report {
        Report::Logins { days, hours, .. } => (
            lang.t("admin.stats.logins"),
            vec![
                svg::chart(
                    Kind::Bars,
                    lang.t("admin.stats.logins_per_day"),
                    &series(days, |d| (d.date.clone(), (d.logins + d.guests) as f64)),
                ),
                svg::chart(
                    Kind::Line,
                    lang.t("admin.stats.unique_users_per_day"),
                    &series(days, |d| (d.date.clone(), d.unique_users as f64)),
                ),
                svg::chart(
                    Kind::Bars,
                    lang.t("admin.stats.registrations_per_day"),
                    &series(days, |d| (d.date.clone(), d.registrations as f64)),
                ),
                svg::chart(
                    Kind::Bars,
                    lang.t("admin.stats.logins_per_hour"),
                    &series(hours, |h| {
                        (format!("{:02}", h.hour), (h.logins + h.guests) as f64)
                    }),
                ),
            ],
        ),
        Report::Lives { days, .. } => (
            lang.t("admin.stats.lives"),
            vec![
                svg::chart(
                    Kind::Bars,
                    lang.t("admin.stats.lives_per_day"),
                    &series(days, |d| (d.date.clone(), d.sessions as f64)),
                ),
                svg::chart(
                    Kind::Line,
                    lang.t("admin.stats.hours_live_per_day"),
                    &series(days, |d| (d.date.clone(), d.hours_live)),
                ),
                svg::chart(
                    Kind::Line,
                    lang.t("admin.stats.peak_viewers_per_day"),
                    &series(days, |d| (d.date.clone(), d.peak_viewers as f64)),
                ),
            ],
        ),
        Report::Records {
            days, top_by_views, ..
        } => (
            lang.t("admin.stats.records"),
            vec![
                svg::chart(
                    Kind::Bars,
                    lang.t("admin.stats.record_views_per_day"),
                    &series(days, |d| (d.date.clone(), d.views as f64)),
                ),
                svg::chart(
                    Kind::Bars,
                    lang.t("admin.stats.top_by_views"),
                    &series(top_by_views, |t| (t.title.clone(), t.views as f64)),
                ),
            ],
        ),
    }
}

// ---- the audit log ----

#[derive(Serialize)]
struct AuditView {
    at: u64,
    admin: String,
    action: &'static str,
    target: String,
    reason: String,
    ip: String,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        AuditView {
            at: e.at,
            admin: e.admin,
            action: e.action.as_str(),
            target: e.target,
            reason: e.reason,
            ip: e.ip,
        }
    }
}

/// The filter and the page a request asks for.
fn audit_query(query: &Query) -> Result<(AuditFilter, Paging), ApiError> {
    let filter = audit_filter(
        query.get("admin"),
        query.get("action"),
        query.get("from"),
        query.get("to"),
    )?;
    Ok((filter, query.paging()?))
}

/// Every entry `filter` admits, as CSV.
async fn audit_csv(app: &App, filter: AuditFilter) -> Result<Response, ApiError> {
    let all = app
        .store
        .run(move |s| s.audit_page(&filter, 0, usize::MAX))
        .await?;
    let rows: Vec<Vec<String>> = all
        .entries
        .into_iter()
        .map(|e| {
            vec![
                e.at.to_string(),
                moment(e.at),
                e.admin,
                e.action.as_str().to_owned(),
                e.target,
                e.reason,
                e.ip,
            ]
        })
        .collect();
    let header = ["at", "time", "admin", "action", "target", "reason", "ip"];
    Ok(csv_response("audit", stats::csv(&header, &rows)))
}

pub(super) use crate::calendar::moment;

/// `GET /api/v1/admin/audit[?admin&action&from&to&page&per_page&format=csv]` →
/// `{"entries":[…],"total"}`, newest first (CSV: every entry the filters admit).
pub async fn audit_api(
    State(app): State<Arc<App>>,
    _: AdminApi,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::of(raw);
    let (filter, paging) = audit_query(&query)?;
    if format(&query)? == Format::Csv {
        return audit_csv(&app, filter).await;
    }
    let page = app
        .store
        .run(move |s| s.audit_page(&filter, paging.offset(), paging.per_page))
        .await?;
    let entries: Vec<AuditView> = page.entries.into_iter().map(AuditView::from).collect();
    Ok(Json(json!({
        "entries": entries,
        "total": page.total,
        "page": paging.page,
        "per_page": paging.per_page,
    }))
    .into_response())
}

/// `GET /admin/audit/csv?admin&action&from&to`: the page's CSV link.
pub async fn audit_csv_page(
    State(app): State<Arc<App>>,
    _: AdminPage,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let (filter, _) = audit_query(&Query::of(raw))?;
    Ok(audit_csv(&app, filter).await?)
}

/// An audit entry as the page shows it.
struct AuditRow {
    time: String,
    entry: AuditView,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    layout: AdminLayout,
    admin: String,
    action: String,
    from: String,
    to: String,
    rows: Vec<AuditRow>,
    total: u64,
    pager: AdminPager,
}

/// `GET /admin/audit?admin&action&from&to&page`: the audit log, newest first, filtered.
pub async fn audit_page(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    lang: Lang,
    csrf: Csrf,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let query = Query::of(raw);
    let (filter, paging) = audit_query(&query)?;
    let found = app
        .store
        .run(move |s| s.audit_page(&filter, paging.offset(), paging.per_page))
        .await
        .map_err(ApiError::from)?;
    let given = |name: &str| query.get(name).unwrap_or_default().trim().to_owned();
    let (admin_name, action, from, to) =
        (given("admin"), given("action"), given("from"), given("to"));
    let pager = AdminPager::new(
        "/admin/audit",
        &[
            ("admin", &admin_name),
            ("action", &action),
            ("from", &from),
            ("to", &to),
        ],
        paging,
        found.entries.len(),
        found.total,
        (lang.t("admin.audit.newer"), lang.t("admin.audit.older")),
    );
    let view = AuditPage {
        layout: AdminLayout::new(lang, "admin.nav.audit", &csrf, Some(&admin)),
        admin: admin_name,
        action,
        from,
        to,
        rows: found
            .entries
            .into_iter()
            .map(|e| AuditRow {
                time: moment(e.at),
                entry: e.into(),
            })
            .collect(),
        total: found.total,
        pager,
    };
    Ok(page(&app, &csrf, StatusCode::OK, &view))
}
