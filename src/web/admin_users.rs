//! The admin's users: the list (`GET /api/v1/admin/users`) and a user's detail
//! (`GET /api/v1/admin/users/{id}`), bearer tokens of admin sessions only; the same as pages
//! (`/admin/users`, `/admin/users/{id}`, the `rm_admin` cookie).
//!
//! Thin: parses the query (`crate::admin::users`), reads the store and recordings, renders.
//! Calls: admin's users, rooms (who is live), records; auth, csrf, admin layout, error.

use std::collections::HashSet;
use std::sync::Arc;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::admin::moderation::{Acting, Recordings};
use crate::admin::users::{self, UserDetail};
use crate::admin::AdminError;
use crate::app::App;
use crate::i18n::Lang;
use crate::model::{
    AuditAction, Ban, BanScope, LoginEvent, LoginKind, RecordId, RoomId, User, UserId, UserKind,
};
use crate::records::{Paging, MAX_PER_PAGE};
use crate::store::{unix_now, UsersPage};

use super::account_pages::{page, see_other, PageForm};
use super::admin_bans;
use super::admin_pages::ReasonForm;
use super::admin_pages::{AdminLayout, AdminPager};
use super::admin_stats::moment;
use super::auth::{request_host, AdminApi, AdminPage, ClientIp};
use super::csrf::Csrf;
use super::error::{ApiError, PageError};
use super::json::ApiJson;
use super::pages::Speaks as _;
use super::path::ApiPath;
use super::records::Query;

#[derive(Serialize)]
struct BanView {
    scope: BanScope,
    reason: String,
    created_at: u64,
    /// Unix seconds; `null`: until lifted.
    until: Option<u64>,
    /// Not lifted and not run out.
    in_force: bool,
}

impl BanView {
    /// The scope as its address says it (`/bans/chat/lift`).
    fn scope_name(&self) -> &'static str {
        match self.scope {
            BanScope::Chat => "chat",
            BanScope::Stream => "stream",
        }
    }

    /// The catalogue key of the scope's word.
    fn scope_key(&self) -> &'static str {
        match self.scope {
            BanScope::Chat => "admin.ban.scope_chat",
            BanScope::Stream => "admin.ban.scope_stream",
        }
    }
}

impl BanView {
    fn of(ban: Ban, now: u64) -> Self {
        BanView {
            in_force: ban.in_force(now),
            scope: ban.scope,
            reason: ban.reason,
            created_at: ban.created_at,
            until: ban.expires_at,
        }
    }

    /// "chat until 2025-01-02 03:04:05" or "stream until lifted", for the pages.
    fn label(&self, lang: Lang) -> String {
        let scope = lang.t(self.scope_key());
        match self.until {
            Some(at) => lang.fill(
                "admin.ban.scope_until",
                &[("scope", &scope), ("when", &lang.moment(&moment(at)))],
            ),
            None => lang.fill("admin.ban.scope_until_lifted", &[("scope", &scope)]),
        }
    }
}

/// When a ban ends, for the pages: the moment, or "until lifted".
pub(super) fn ban_end_label(lang: Lang, until: Option<u64>) -> String {
    until.map_or_else(
        || lang.t("admin.ban.until_lifted").to_owned(),
        |at| lang.moment(&moment(at)),
    )
}

#[derive(Serialize)]
pub struct UserView {
    user_id: UserId,
    kind: UserKind,
    username: Option<String>,
    email: Option<String>,
    nickname: String,
    verified: bool,
    created_at: u64,
    last_login_at: Option<u64>,
    /// In the list: the bans in force; in the detail (which lists every ban apart): none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bans: Vec<BanView>,
}

impl UserView {
    fn of(user: &User, bans: Vec<Ban>) -> Self {
        UserView {
            user_id: user.id,
            kind: user.kind,
            username: user.username.clone(),
            email: user.email.clone(),
            nickname: user.nickname.clone(),
            verified: user.is_verified(),
            created_at: user.created_at,
            last_login_at: user.last_login_at,
            bans: bans
                .into_iter()
                .map(|b| BanView::of(b, unix_now()))
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct LoginView {
    at: u64,
    kind: LoginKind,
    ip: Option<String>,
}

impl LoginView {
    /// The catalogue key of how they logged in.
    fn kind_key(&self) -> &'static str {
        match self.kind {
            LoginKind::Password => "admin.user.login_password",
            LoginKind::Guest => "admin.user.login_guest",
        }
    }
}

impl From<LoginEvent> for LoginView {
    fn from(event: LoginEvent) -> Self {
        LoginView {
            at: event.at,
            kind: event.kind,
            ip: event.ip,
        }
    }
}

/// The list page a request's query asks for.
async fn users_page(app: &App, query: &Query) -> Result<(UsersPage, Paging), ApiError> {
    let paging = Paging::parse(query.get("page"), query.get("per_page"))?;
    let live_hosts: HashSet<UserId> = app
        .rooms
        .live_rooms()
        .iter()
        .map(|room| UserId(room.host.user_id))
        .collect();
    let users_query = users::query(
        query.get("q"),
        query.get("filter"),
        query.get("sort"),
        paging,
        live_hosts,
    )?;
    let page = app.store.run(move |s| s.users_page(&users_query)).await?;
    Ok((page, paging))
}

fn listed(page: UsersPage) -> Vec<UserView> {
    page.users
        .into_iter()
        .map(|(user, bans)| UserView::of(&user, bans))
        .collect()
}

/// `GET /api/v1/admin/users?q&filter&sort&page&per_page` → `{"users","total","page","per_page"}`.
pub async fn list(
    State(app): State<Arc<App>>,
    _: AdminApi,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (page, paging) = users_page(&app, &Query::of(raw)).await?;
    let total = page.total;
    Ok(Json(json!({
        "users": listed(page),
        "total": total,
        "page": paging.page,
        "per_page": paging.per_page,
    })))
}

/// What a user's detail shows, as JSON and on the page.
#[derive(Serialize)]
pub struct DetailView {
    user: UserView,
    last_login_ip: Option<String>,
    /// The language tag the user's mail is written in.
    language: Option<String>,
    room: Option<RoomView>,
    recordings: Vec<RecordingView>,
    /// Every ban, in force or not, oldest first.
    bans: Vec<BanView>,
    /// The latest logins, newest first.
    logins: Vec<LoginView>,
}

#[derive(Serialize)]
struct RoomView {
    room_id: RoomId,
    name: String,
}

#[derive(Serialize)]
struct RecordingView {
    record_id: RecordId,
    title: String,
    started_at: u64,
    duration_secs: u64,
}

async fn detail_of(app: &App, id: u64) -> Result<DetailView, ApiError> {
    let UserDetail {
        user,
        room,
        bans,
        logins,
        language,
    } = users::detail(&app.store, UserId(id)).await?;
    let all = Paging {
        page: 1,
        per_page: MAX_PER_PAGE,
    };
    let recordings = app.records.of_user(user.id, all).await?;
    Ok(DetailView {
        user: UserView::of(&user, Vec::new()),
        last_login_ip: user.last_login_ip,
        language,
        room: room.map(|room| RoomView {
            room_id: room.id,
            name: room.name,
        }),
        recordings: recordings
            .records
            .into_iter()
            .map(|listed| RecordingView {
                record_id: listed.record.id,
                title: listed.record.title,
                started_at: listed.record.started_at,
                duration_secs: listed.record.duration_secs,
            })
            .collect(),
        bans: bans
            .into_iter()
            .map(|b| BanView::of(b, unix_now()))
            .collect(),
        logins: logins.into_iter().map(LoginView::from).collect(),
    })
}

/// `GET /api/v1/admin/users/{id}`: the user, last login and its IP, room, recordings, every
/// ban and the latest logins.
pub async fn detail(
    State(app): State<Arc<App>>,
    _: AdminApi,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<DetailView>, ApiError> {
    Ok(Json(detail_of(&app, id).await?))
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPageView {
    layout: AdminLayout,
    q: String,
    filter: String,
    sort: String,
    rows: Vec<UserRow>,
    total: u64,
    pager: AdminPager,
}

/// A listed user with the times as the page shows them.
struct UserRow {
    user: UserView,
    registered: String,
    last_login: String,
    /// The bans in force, as the "banned" badge says them.
    bans: Vec<String>,
}

/// `GET /admin/users?q&filter&sort&page`: the users list page.
pub async fn users_list_page(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    lang: Lang,
    csrf: Csrf,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let query = Query::of(raw);
    let (found, paging) = users_page(&app, &query).await?;
    let given = |name: &str| query.get(name).unwrap_or_default().trim().to_owned();
    let (q, filter, sort) = (given("q"), given("filter"), given("sort"));
    let total = found.total;
    let rows: Vec<UserRow> = listed(found)
        .into_iter()
        .map(|user| UserRow {
            bans: user.bans.iter().map(|b| b.label(lang)).collect(),
            registered: moment(user.created_at),
            last_login: user.last_login_at.map(moment).unwrap_or_default(),
            user,
        })
        .collect();
    let pager = AdminPager::new(
        "/admin/users",
        &[("q", &q), ("filter", &filter), ("sort", &sort)],
        paging,
        rows.len(),
        total,
        (lang.t("admin.users.previous"), lang.t("admin.users.next")),
    );
    let view = UsersPageView {
        layout: AdminLayout::new(lang, "admin.nav.users", &csrf, Some(&admin)),
        q,
        filter,
        sort,
        rows,
        total,
        pager,
    };
    Ok(page(&app, &csrf, StatusCode::OK, &view))
}

#[derive(Template)]
#[template(path = "admin/user.html")]
struct UserPageView {
    layout: AdminLayout,
    detail: DetailView,
    registered: String,
    last_login: String,
    /// (start, until) of each ban as the page shows them, in `detail.bans`' order.
    ban_times: Vec<(String, String)>,
    recording_times: Vec<String>,
    login_times: Vec<String>,
    /// What the form just done did, after its redirect.
    notice: Option<&'static str>,
    /// The scopes with a ban in force, for the lift buttons: (as the address says it, its
    /// word).
    banned_scopes: Vec<(&'static str, &'static str)>,
}

/// `GET /admin/users/{id}`: a user's detail page.
pub async fn user_page(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    lang: Lang,
    csrf: Csrf,
    ApiPath(id): ApiPath<u64>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let detail = detail_of(&app, id).await?;
    let mut banned_scopes: Vec<(&'static str, &'static str)> = detail
        .bans
        .iter()
        .filter(|b| b.in_force)
        .map(|b| (b.scope_name(), lang.t(b.scope_key())))
        .collect();
    banned_scopes.dedup();
    let view = UserPageView {
        layout: AdminLayout::new(lang, "admin.nav.users", &csrf, Some(&admin)),
        notice: Query::of(raw)
            .get("notice")
            .and_then(notice_key)
            .map(|key| lang.t(key)),
        banned_scopes,
        registered: moment(detail.user.created_at),
        last_login: detail.user.last_login_at.map(moment).unwrap_or_default(),
        ban_times: detail
            .bans
            .iter()
            .map(|b| {
                let given = lang.moment(&moment(b.created_at));
                (given, ban_end_label(lang, b.until))
            })
            .collect(),
        recording_times: detail
            .recordings
            .iter()
            .map(|r| moment(r.started_at))
            .collect(),
        login_times: detail.logins.iter().map(|l| moment(l.at)).collect(),
        detail,
    };
    Ok(page(&app, &csrf, StatusCode::OK, &view))
}

/// An admin action's reason, from JSON or a page's form.
#[derive(Deserialize)]
pub struct ActionBody {
    #[serde(default)]
    reason: String,
}

/// What an admin does to an unverified account.
#[derive(Clone, Copy)]
pub enum EmailAction {
    MarkVerified,
    Resend,
}

impl EmailAction {
    /// What the JSON API answers: the address is verified now (`204`), or a mail is on its
    /// way (`202`).
    fn done(self) -> StatusCode {
        match self {
            EmailAction::MarkVerified => StatusCode::NO_CONTENT,
            EmailAction::Resend => StatusCode::ACCEPTED,
        }
    }
}

/// An [`EmailAction`] as a type, so that one handler serves each action's route
/// (`email_api::<Resend>`).
pub trait ChosenAction {
    const ACTION: EmailAction;
}

pub struct MarkVerified;

impl ChosenAction for MarkVerified {
    const ACTION: EmailAction = EmailAction::MarkVerified;
}

pub struct Resend;

impl ChosenAction for Resend {
    const ACTION: EmailAction = EmailAction::Resend;
}

async fn email_action(
    app: &App,
    by: Acting<'_>,
    headers: &HeaderMap,
    id: u64,
    reason: &str,
    action: EmailAction,
) -> Result<(), ApiError> {
    let reason = crate::admin::reason(reason)?;
    let target = format!("user:{id}");
    let id = UserId(id);
    match action {
        EmailAction::MarkVerified => {
            let audit = by.audit(AuditAction::MarkVerified, target, &reason);
            app.accounts.mark_verified(id, audit).await?;
        }
        EmailAction::Resend => {
            let audit = by.audit(AuditAction::ResendVerification, target, &reason);
            let link_base = app.site.link_base(request_host(headers));
            app.accounts
                .resend_as_admin(id, by.ip, &link_base, audit)
                .await?;
        }
    }
    Ok(())
}

/// `POST /api/v1/admin/users/{id}/verify` `{"reason"?}`: marks the email verified, `204`;
/// `POST /api/v1/admin/users/{id}/resend-verification` `{"reason"?}`: a new link, `202`.
pub async fn email_api<A: ChosenAction>(
    State(app): State<Arc<App>>,
    AdminApi(admin): AdminApi,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<ActionBody>,
) -> Result<StatusCode, ApiError> {
    let by = Acting { admin: &admin, ip };
    email_action(&app, by, &headers, id, &body.reason, A::ACTION).await?;
    Ok(A::ACTION.done())
}

/// `POST /admin/users/{id}/verify` and `POST /admin/users/{id}/resend-verification` (the user
/// page's forms): `303` back to the page.
pub async fn email_submit<A: ChosenAction>(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    ClientIp(ip): ClientIp,
    csrf: Csrf,
    headers: HeaderMap,
    ApiPath(id): ApiPath<u64>,
    PageForm(form): PageForm<ReasonForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let by = Acting { admin: &admin, ip };
    email_action(&app, by, &headers, id, &form.reason, A::ACTION).await?;
    Ok(see_other(&format!("/admin/users/{id}"), None))
}

/// Whether deleting an account deletes its recordings too, as the query or form says it.
fn recordings(value: Option<&str>) -> Result<Recordings, AdminError> {
    match value {
        None | Some("keep") => Ok(Recordings::Keep),
        Some("delete") => Ok(Recordings::Delete),
        Some(other) => Err(AdminError::InvalidQuery(format!(
            "`recordings` is keep or delete; {other:?} is not"
        ))),
    }
}

/// `DELETE /api/v1/admin/users/{id}?recordings=keep|delete&reason=…`. `204`.
pub async fn delete(
    State(app): State<Arc<App>>,
    AdminApi(admin): AdminApi,
    ClientIp(ip): ClientIp,
    ApiPath(id): ApiPath<u64>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    let query = Query::of(raw);
    let recordings = recordings(query.get("recordings"))?;
    let reason = query.get("reason").unwrap_or_default();
    let by = Acting { admin: &admin, ip };
    app.moderation
        .delete_account(by, UserId(id), recordings, reason)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    recordings: Option<String>,
}

/// `POST /admin/users/{id}/delete` (the user page's form); `303` to the users list.
pub async fn delete_submit(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    ClientIp(ip): ClientIp,
    csrf: Csrf,
    ApiPath(id): ApiPath<u64>,
    PageForm(form): PageForm<DeleteForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let recordings = recordings(form.recordings.as_deref()).map_err(ApiError::from)?;
    let by = Acting { admin: &admin, ip };
    app.moderation
        .delete_account(by, UserId(id), recordings, &form.reason)
        .await
        .map_err(ApiError::from)?;
    Ok(see_other("/admin/users", None))
}

/// The catalogue key of the notice a user page shows after its forms' redirect; only these
/// fixed sentences, so a link cannot make the page say anything else.
fn notice_key(notice: &str) -> Option<&'static str> {
    match notice {
        "banned" => Some("admin.user.notice_banned"),
        "lifted" => Some("admin.user.notice_lifted"),
        _ => None,
    }
}

/// The user page's ban form.
#[derive(Deserialize)]
pub struct BanForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    reason: String,
    /// `1h`, `1d`, `7d`, `permanent` or `date` (then `date` says the last day).
    #[serde(default)]
    expiry: String,
    #[serde(default)]
    date: String,
}

/// `POST /admin/users/{id}/bans` (the user page's ban form): `303` back to the page.
pub async fn ban_submit(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    ClientIp(ip): ClientIp,
    csrf: Csrf,
    ApiPath(id): ApiPath<u64>,
    PageForm(form): PageForm<BanForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let scope = admin_bans::ban_scope(&form.scope)?;
    let until =
        crate::admin::ban_end(&form.expiry, &form.date, unix_now()).map_err(ApiError::from)?;
    let by = Acting { admin: &admin, ip };
    app.moderation
        .ban(by, UserId(id), scope, &form.reason, until)
        .await
        .map_err(ApiError::from)?;
    Ok(see_other(&format!("/admin/users/{id}?notice=banned"), None))
}

/// `POST /admin/users/{id}/bans/{scope}/lift` (the user page's lift button): `303` back.
pub async fn lift_submit(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    ClientIp(ip): ClientIp,
    csrf: Csrf,
    ApiPath((id, scope)): ApiPath<(u64, String)>,
    PageForm(form): PageForm<ReasonForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let scope = admin_bans::ban_scope(&scope)?;
    let by = Acting { admin: &admin, ip };
    app.moderation
        .lift_bans(by, UserId(id), scope, &form.reason)
        .await
        .map_err(ApiError::from)?;
    Ok(see_other(&format!("/admin/users/{id}?notice=lifted"), None))
}
