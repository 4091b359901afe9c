//! The admin pages under `/admin`: the first-run setup, the login and logout, the dashboard. One
//! admin layout (`templates/admin/base.html`) with the admin's nav; usable without JavaScript;
//! every form carries a CSRF token keyed with the admin session (`csrf.rs`).
//!
//! Calls: app → admins; the dashboard's figures (`admin.rs`); auth, csrf, error, account pages'
//! response helpers.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use crate::admin::{AdminError, SignedAdmin};
use crate::app::App;
use crate::config::MediaBackend;
use crate::i18n::Lang;
use crate::records::Paging;
use crate::rooms::RoomSummary;

use super::account_pages::{page, see_other, CsrfOnlyForm, PageForm};
use super::admin::Dashboard;
use super::auth::{admin_cookie, clear_admin_cookie, cookie, AdminPage, ClientIp, ADMIN_COOKIE};
use super::csrf::Csrf;
use super::error::{ApiError, PageError};
use super::pages::Speaks;

/// One entry of the admin nav; an empty `href` is a page not built yet, shown disabled.
pub struct NavItem {
    pub label: &'static str,
    pub href: &'static str,
    pub current: bool,
}

/// The admin sections, in nav order: the catalogue key of the label (also the page's title),
/// and the address.
const SECTIONS: [(&str, &str); 9] = [
    ("admin.nav.dashboard", "/admin"),
    ("admin.nav.users", "/admin/users"),
    ("admin.nav.recordings", "/admin/records"),
    ("admin.nav.rooms", "/admin/rooms"),
    ("admin.nav.statistics", "/admin/stats"),
    ("admin.nav.downloads", "/admin/downloads"),
    ("admin.nav.audit", "/admin/audit"),
    ("admin.nav.mail", "/admin/mail"),
    ("admin.nav.ip_bans", "/admin/ip-bans"),
];

/// An admin form that carries only an optional reason for the audit log (lift, close, delete,
/// mark verified, resend).
#[derive(Deserialize)]
pub struct ReasonForm {
    #[serde(default)]
    pub(super) csrf: String,
    #[serde(default)]
    pub(super) reason: String,
}

/// What `admin/base.html` needs from every admin page, and the reader's language for the
/// templates' strings ([`Speaks`]; `{{ layout.lang.moment(…) }}` for times).
pub struct AdminLayout {
    pub lang: Lang,
    pub title: String,
    pub version: &'static str,
    /// The signed-in admin, for the nav (none on the login and setup pages).
    pub admin_name: Option<String>,
    pub nav: Vec<NavItem>,
    /// For the forms of the page and the nav's logout.
    pub csrf: String,
}

impl AdminLayout {
    /// `title` is a catalogue key; a section's key marks it current in the nav.
    pub(super) fn new(lang: Lang, title: &str, csrf: &Csrf, admin: Option<&SignedAdmin>) -> Self {
        AdminLayout {
            lang,
            title: lang.t(title).to_owned(),
            version: env!("CARGO_PKG_VERSION"),
            admin_name: admin.map(|a| a.admin.name.clone()),
            nav: SECTIONS
                .iter()
                .map(|&(key, href)| NavItem {
                    label: lang.t(key),
                    href,
                    current: key == title,
                })
                .collect(),
            csrf: csrf.token.clone(),
        }
    }
}

impl Speaks for AdminLayout {
    fn lang(&self) -> Lang {
        self.lang
    }
}

/// The paging links under an admin list (`admin/pager.html`): the same search on the page
/// before and the page after, where there are such pages.
pub struct AdminPager {
    pub path: &'static str,
    /// The search as a query string (the audit page's CSV link takes it too).
    pub filters: String,
    pub previous: Option<usize>,
    pub next: Option<usize>,
    pub per_page: usize,
    /// The two links' words.
    pub words: (&'static str, &'static str),
}

impl AdminPager {
    /// For the list at `path` searched with `search` (each field as given, empty ones too),
    /// showing `on_page` of `total` items on the page `paging` asks for.
    pub(super) fn new(
        path: &'static str,
        search: &[(&str, &str)],
        paging: Paging,
        on_page: usize,
        total: u64,
        words: (&'static str, &'static str),
    ) -> Self {
        let (previous, next) = paging.neighbours(on_page, total);
        AdminPager {
            path,
            filters: form_urlencoded::Serializer::new(String::new())
                .extend_pairs(search)
                .finish(),
            previous,
            next,
            per_page: paging.per_page,
            words,
        }
    }
}

#[derive(Template)]
#[template(path = "admin/notice.html")]
struct AdminNoticePage {
    layout: AdminLayout,
    message: String,
}

/// A refusal as an admin page (the setup link used up or wrong).
fn notice(app: &App, lang: Lang, csrf: &Csrf, title: &str, e: AdminError) -> Response {
    let error = ApiError::from(e);
    let notice = AdminNoticePage {
        layout: AdminLayout::new(lang, title, csrf, None),
        message: error.message_in(lang),
    };
    page(app, csrf, error.status, &notice)
}

// ---- first-run setup ----

#[derive(Template)]
#[template(path = "admin/setup.html")]
struct SetupPage {
    layout: AdminLayout,
    token: String,
    name: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct SetupQuery {
    #[serde(default)]
    token: String,
}

#[derive(Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// `GET /admin/setup?token=…`: the form that creates the first admin, while the token is good.
pub async fn setup_page(
    State(app): State<Arc<App>>,
    lang: Lang,
    csrf: Csrf,
    Query(query): Query<SetupQuery>,
) -> Response {
    if let Err(e) = app.admins.check_setup(&query.token).await {
        return notice(&app, lang, &csrf, "admin.setup.title", e);
    }
    let form = SetupPage {
        layout: AdminLayout::new(lang, "admin.setup.title", &csrf, None),
        token: query.token,
        name: String::new(),
        error: None,
    };
    page(&app, &csrf, StatusCode::OK, &form)
}

/// `POST /admin/setup`: creates the first admin and logs it in.
pub async fn setup_submit(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    lang: Lang,
    csrf: Csrf,
    PageForm(form): PageForm<SetupForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let created = app
        .admins
        .create_first(&form.token, &form.name, &form.password, ip)
        .await;
    match created {
        Ok(login) => Ok(see_other(
            "/admin",
            Some(admin_cookie(&app, &login.token, login.expires_at)),
        )),
        Err(e @ (AdminError::SetupDone | AdminError::SetupInvalid)) => {
            Ok(notice(&app, lang, &csrf, "admin.setup.title", e))
        }
        Err(e) => {
            let error = ApiError::from(e);
            let again = SetupPage {
                layout: AdminLayout::new(lang, "admin.setup.title", &csrf, None),
                token: form.token,
                name: form.name,
                error: Some(error.message_in(lang)),
            };
            Ok(page(&app, &csrf, error.status, &again))
        }
    }
}

// ---- login, logout ----

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage {
    layout: AdminLayout,
    name: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// `GET /admin/login`.
pub async fn login_page(State(app): State<Arc<App>>, lang: Lang, csrf: Csrf) -> Response {
    let form = LoginPage {
        layout: AdminLayout::new(lang, "admin.login.title", &csrf, None),
        name: String::new(),
        error: None,
    };
    page(&app, &csrf, StatusCode::OK, &form)
}

/// `POST /admin/login`: on success the `rm_admin` cookie and the dashboard.
pub async fn login_submit(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    lang: Lang,
    csrf: Csrf,
    PageForm(form): PageForm<LoginForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    match app.admins.login(&form.name, &form.password, ip).await {
        Ok(login) => Ok(see_other(
            "/admin",
            Some(admin_cookie(&app, &login.token, login.expires_at)),
        )),
        Err(e) => {
            let error = ApiError::from(e);
            let again = LoginPage {
                layout: AdminLayout::new(lang, "admin.login.title", &csrf, None),
                name: form.name,
                error: Some(error.message_in(lang)),
            };
            Ok(page(&app, &csrf, error.status, &again))
        }
    }
}

/// `POST /admin/logout`: ends the admin session of the cookie, if any, and clears it.
pub async fn logout_submit(
    State(app): State<Arc<App>>,
    csrf: Csrf,
    headers: HeaderMap,
    PageForm(form): PageForm<CsrfOnlyForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    if let Some(token) = cookie(&headers, ADMIN_COOKIE) {
        if let Ok(admin) = app.admins.authenticate(token).await {
            app.admins
                .logout(admin.session)
                .await
                .map_err(ApiError::from)?;
        }
    }
    Ok(see_other("/admin/login", Some(clear_admin_cookie(&app))))
}

// ---- dashboard ----

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage {
    layout: AdminLayout,
    live_rooms: usize,
    viewers_now: usize,
    registrations_today: u64,
    recordings: String,
    disk_free: String,
    disk_total: String,
    media_backend: &'static str,
    media_status: &'static str,
    media_problem: Option<String>,
    rooms: Vec<RoomSummary>,
}

/// `GET /admin`: the site right now.
pub async fn dashboard(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    lang: Lang,
    csrf: Csrf,
) -> Result<Response, PageError> {
    let figures = Dashboard::gather(&app).await?;
    let unknown = || lang.t("admin.dashboard.unknown").to_owned();
    let view = DashboardPage {
        layout: AdminLayout::new(lang, "admin.nav.dashboard", &csrf, Some(&admin)),
        live_rooms: figures.live_rooms.len(),
        viewers_now: figures.viewers_now,
        registrations_today: figures.registrations_today,
        recordings: figures.recordings_bytes.map_or_else(
            || lang.t("admin.dashboard.kept_by_backend").to_owned(),
            in_units,
        ),
        disk_free: figures
            .disk
            .map_or_else(unknown, |d| in_units(d.free_bytes)),
        disk_total: figures
            .disk
            .map_or_else(unknown, |d| in_units(d.total_bytes)),
        media_backend: match figures.media.backend {
            MediaBackend::Rtmp => "rtmp",
            MediaBackend::Http => "http",
            MediaBackend::Builtin => "builtin",
        },
        media_status: lang.t(match figures.media.status {
            Some("ok") => "admin.dashboard.media_ok",
            Some(_) => "admin.dashboard.media_unavailable",
            None => "admin.dashboard.not_checked",
        }),
        media_problem: figures.media.problem,
        rooms: figures.live_rooms,
    };
    Ok(page(&app, &csrf, StatusCode::OK, &view))
}

/// Bytes as a person reads them: "512 B", "1.5 MB", "12.0 GB" (powers of 1024).
pub(super) fn in_units(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::in_units;

    #[test]
    fn sizes_are_said_in_units() {
        assert_eq!(in_units(0), "0 B");
        assert_eq!(in_units(1023), "1023 B");
        assert_eq!(in_units(1536), "1.5 KB");
        assert_eq!(in_units(5 * 1024 * 1024 * 1024), "5.0 GB");
    }
}
