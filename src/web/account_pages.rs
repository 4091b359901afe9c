//! The account pages: `/register`, `/login`, `/logout`, `/guest`, `/verify`, `/me`. Server
//! rendered, usable without JavaScript; every form carries a CSRF token.

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use crate::accounts::{AccountsError, SignedIn, Verification};
use crate::app::App;
use crate::config::MailTransport;
use crate::files::ImageKind;
use crate::i18n::Lang;
use crate::model::UserKind;

use super::auth::{
    clear_session_cookie, request_host, session_cookie, session_token, ClientIp, MaybeSigned,
    PageSigned,
};
use super::csrf::Csrf;
use super::error::{ApiError, PageError};
use super::pages::{render, Layout, Speaks as _};

/// A page response, with the CSRF cookie when the browser needs one.
pub(super) fn page(app: &App, csrf: &Csrf, status: StatusCode, page: &impl Template) -> Response {
    match render(page) {
        Ok(html) => {
            let mut response = (status, html).into_response();
            if let Some(cookie) = csrf.cookie(app) {
                if let Ok(value) = cookie.parse() {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

/// A redirect after a successful form, optionally setting a cookie.
pub(super) fn see_other(to: &str, cookie: Option<String>) -> Response {
    let mut response = Redirect::to(to).into_response();
    if let Some(value) = cookie.and_then(|c| c.parse().ok()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The status and sentence a person should see for a domain error, in their language.
fn problem(e: AccountsError, lang: Lang) -> (StatusCode, String) {
    let api = ApiError::from(e);
    (api.status, api.message_in(lang))
}

/// What a refused form shows: the sentence, and the field it is about (the `id` of its control
/// in the page). The page marks that control `aria-invalid`, puts the sentence under it and
/// points at it with `aria-describedby`; a sentence about no one field heads the form.
#[derive(Default)]
pub(super) struct FormError {
    message: Option<String>,
    field: Option<&'static str>,
}

impl FormError {
    pub(super) fn new(message: String, field: Option<&'static str>) -> Self {
        FormError {
            message: Some(message),
            field,
        }
    }

    /// The sentence, when it is about the form as a whole.
    pub(super) fn general(&self) -> Option<&str> {
        self.message.as_deref().filter(|_| self.field.is_none())
    }

    /// The sentence, when it is about the control `id`.
    pub(super) fn on(&self, id: &str) -> Option<&str> {
        self.message.as_deref().filter(|_| self.field == Some(id))
    }
}

/// The control of the account forms (register, login, `/me`) a domain error is about.
fn field_of(e: &AccountsError) -> Option<&'static str> {
    use AccountsError::*;
    match e {
        InvalidUsername(_) | UsernameTaken | UsernamePending(_) => Some("username"),
        InvalidEmail(_) | EmailTaken | EmailPending(_) => Some("email"),
        InvalidPassword(_) | InvalidCredentials => Some("password"),
        InvalidLogin(_) => Some("login"),
        InvalidNickname(_) => Some("nickname"),
        InvalidRoomName(_) => Some("room-name"),
        InvalidDescription(_) => Some("description"),
        _ => None,
    }
}

/// [`problem`], as a form shows it.
fn form_problem(e: AccountsError, lang: Lang) -> (StatusCode, FormError) {
    let field = field_of(&e);
    let (status, message) = problem(e, lang);
    (status, FormError::new(message, field))
}

/// A URL-encoded form whose decoding errors become an error page.
pub struct PageForm<T>(pub T);

impl<T, S> FromRequest<S> for PageForm<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, PageError> {
        Form::<T>::from_request(req, state)
            .await
            .map(|Form(value)| PageForm(value))
            .map_err(|e: FormRejection| {
                PageError(ApiError::new(e.status(), "bad_form", e.body_text()))
            })
    }
}

// ---- register ----

#[derive(Template)]
#[template(path = "register.html")]
struct RegisterPage {
    layout: Layout,
    csrf: String,
    error: FormError,
    username: String,
    email: String,
}

#[derive(Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

pub async fn register_page(
    State(app): State<Arc<App>>,
    lang: Lang,
    MaybeSigned(who): MaybeSigned,
    csrf: Csrf,
) -> Response {
    let form = RegisterPage {
        layout: Layout::for_user(lang, lang.t("register.title"), who.as_ref()),
        csrf: csrf.token.clone(),
        error: FormError::default(),
        username: String::new(),
        email: String::new(),
    };
    page(&app, &csrf, StatusCode::OK, &form)
}

pub async fn register_submit(
    State(app): State<Arc<App>>,
    lang: Lang,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    csrf: Csrf,
    PageForm(form): PageForm<RegisterForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let link_base = app.site.link_base(request_host(&headers));
    let registered = app
        .accounts
        .register(
            &form.username,
            &form.password,
            &form.email,
            ip,
            &link_base,
            lang,
        )
        .await;
    match registered {
        Ok(_) => {
            let mut message = lang.fill("register.sent", &[("email", &form.email)]);
            if app.config.email.transport == MailTransport::Outbox {
                message.push(' ');
                message.push_str(lang.t("register.outbox"));
            }
            let notice = NoticePage::new(lang, "notice.check_email", message, &csrf, None);
            Ok(page(&app, &csrf, StatusCode::CREATED, &notice))
        }
        Err(e) => {
            let (status, error) = form_problem(e, lang);
            let form = RegisterPage {
                layout: Layout::new(lang, lang.t("register.title")),
                csrf: csrf.token.clone(),
                error,
                username: form.username,
                email: form.email,
            };
            Ok(page(&app, &csrf, status, &form))
        }
    }
}

// ---- notices (verify, resend, check your email) ----

#[derive(Template)]
#[template(path = "notice.html")]
pub(super) struct NoticePage {
    layout: Layout,
    message: String,
    csrf: String,
    /// Show a "send a new link" form, pre-filled with this account.
    offer_resend: bool,
    username: String,
    email: String,
}

/// The account a "send a new link" form is pre-filled with (either part may be empty).
#[derive(Default)]
pub(super) struct ResendTo {
    username: String,
    email: String,
}

impl NoticePage {
    /// A notice titled by the catalogue's `title` key.
    pub(super) fn new(
        lang: Lang,
        title: &str,
        message: String,
        csrf: &Csrf,
        resend_to: Option<ResendTo>,
    ) -> Self {
        let offer_resend = resend_to.is_some();
        let ResendTo { username, email } = resend_to.unwrap_or_default();
        NoticePage {
            layout: Layout::new(lang, lang.t(title)),
            message,
            csrf: csrf.token.clone(),
            offer_resend,
            username,
            email,
        }
    }
}

#[derive(Deserialize)]
pub struct VerifyQuery {
    #[serde(default)]
    token: String,
}

pub async fn verify_page(
    State(app): State<Arc<App>>,
    lang: Lang,
    csrf: Csrf,
    Query(query): Query<VerifyQuery>,
) -> Result<Response, PageError> {
    let outcome = app
        .accounts
        .verify(&query.token)
        .await
        .map_err(ApiError::from)?;
    let (status, title, message, resend_to) = match outcome {
        Verification::Verified { nickname } => (
            StatusCode::OK,
            "verify.verified_title",
            lang.fill("verify.verified", &[("nickname", &nickname)]),
            None,
        ),
        Verification::AlreadyVerified => (
            StatusCode::OK,
            "verify.already_title",
            lang.t("verify.already").to_owned(),
            None,
        ),
        Verification::Expired { username, email } => (
            StatusCode::GONE,
            "verify.expired_title",
            lang.t("verify.expired").to_owned(),
            Some(ResendTo { username, email }),
        ),
        Verification::Superseded { username, email } => (
            StatusCode::GONE,
            "verify.superseded_title",
            lang.t("verify.superseded").to_owned(),
            Some(ResendTo { username, email }),
        ),
        Verification::Unknown => (
            StatusCode::NOT_FOUND,
            "verify.unknown_title",
            lang.t("verify.unknown").to_owned(),
            Some(ResendTo::default()),
        ),
    };
    let notice = NoticePage::new(lang, title, message, &csrf, resend_to);
    Ok(page(&app, &csrf, status, &notice))
}

#[derive(Deserialize)]
pub struct ResendForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
}

pub async fn resend_submit(
    State(app): State<Arc<App>>,
    lang: Lang,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
    csrf: Csrf,
    PageForm(form): PageForm<ResendForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let link_base = app.site.link_base(request_host(&headers));
    let sent = app
        .accounts
        .resend_verification(&form.username, &form.email, ip, &link_base, lang)
        .await;
    let notice = match sent {
        Ok(()) => (
            StatusCode::ACCEPTED,
            NoticePage::new(
                lang,
                "notice.check_email",
                lang.fill("verify.resent", &[("email", &form.email)]),
                &csrf,
                None,
            ),
        ),
        Err(AccountsError::AlreadyVerified) => (
            StatusCode::OK,
            NoticePage::new(
                lang,
                "verify.already_title",
                lang.t("verify.already").to_owned(),
                &csrf,
                None,
            ),
        ),
        Err(e) => {
            let (status, message) = problem(e, lang);
            let again = ResendTo {
                username: form.username,
                email: form.email,
            };
            (
                status,
                NoticePage::new(lang, "verify.not_sent_title", message, &csrf, Some(again)),
            )
        }
    };
    Ok(page(&app, &csrf, notice.0, &notice.1))
}

// ---- login, guest, logout ----

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    csrf: String,
    error: FormError,
    login: String,
    offer_resend: bool,
    /// The resend form is pre-filled with what the login named.
    resend_username: String,
    resend_email: String,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
}

pub async fn login_page(
    State(app): State<Arc<App>>,
    lang: Lang,
    MaybeSigned(who): MaybeSigned,
    csrf: Csrf,
) -> Response {
    let form = LoginPage {
        layout: Layout::for_user(lang, lang.t("login.title"), who.as_ref()),
        csrf: csrf.token.clone(),
        error: FormError::default(),
        login: String::new(),
        offer_resend: false,
        resend_username: String::new(),
        resend_email: String::new(),
    };
    page(&app, &csrf, StatusCode::OK, &form)
}

pub async fn login_submit(
    State(app): State<Arc<App>>,
    lang: Lang,
    ClientIp(ip): ClientIp,
    csrf: Csrf,
    PageForm(form): PageForm<LoginForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    match app.accounts.login(&form.login, &form.password, ip).await {
        Ok(session) => Ok(see_other(
            "/me",
            Some(session_cookie(&app, &session.token, session.expires_at)),
        )),
        Err(e) => {
            let offer_resend = matches!(e, AccountsError::EmailNotVerified);
            let (status, error) = form_problem(e, lang);
            let (resend_username, resend_email) = if form.login.contains('@') {
                (String::new(), form.login.clone())
            } else {
                (form.login.clone(), String::new())
            };
            let form = LoginPage {
                layout: Layout::new(lang, lang.t("login.title")),
                csrf: csrf.token.clone(),
                error,
                login: form.login,
                offer_resend,
                resend_username,
                resend_email,
            };
            Ok(page(&app, &csrf, status, &form))
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfOnlyForm {
    #[serde(default)]
    pub(super) csrf: String,
}

pub async fn guest_submit(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    csrf: Csrf,
    PageForm(form): PageForm<CsrfOnlyForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    app.ip_bans.check(ip).map_err(ApiError::from)?;
    let session = app
        .accounts
        .create_guest(ip)
        .await
        .map_err(ApiError::from)?;
    Ok(see_other(
        "/",
        Some(session_cookie(&app, &session.token, session.expires_at)),
    ))
}

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage {
    layout: Layout,
    csrf: String,
}

pub async fn logout_page(
    State(app): State<Arc<App>>,
    lang: Lang,
    MaybeSigned(who): MaybeSigned,
    csrf: Csrf,
) -> Response {
    let form = LogoutPage {
        layout: Layout::for_user(lang, lang.t("logout.title"), who.as_ref()),
        csrf: csrf.token.clone(),
    };
    page(&app, &csrf, StatusCode::OK, &form)
}

pub async fn logout_submit(
    State(app): State<Arc<App>>,
    csrf: Csrf,
    headers: axum::http::HeaderMap,
    PageForm(form): PageForm<CsrfOnlyForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    if let Some(token) = session_token(&headers) {
        app.accounts
            .logout_token(token)
            .await
            .map_err(ApiError::from)?;
    }
    Ok(see_other("/", Some(clear_session_cookie(&app))))
}

// ---- profile ----

#[derive(Template)]
#[template(path = "me.html")]
struct MePage {
    layout: Layout,
    csrf: String,
    error: FormError,
    done: Option<&'static str>,
    guest: bool,
    /// For the link to the user's own recordings, on their host page.
    user_id: u64,
    nickname: String,
    initial: String,
    username: String,
    email: String,
    avatar_url: Option<String>,
    room_name: String,
    room_description: String,
    cover_url: Option<String>,
}

#[derive(Deserialize)]
pub struct MeQuery {
    done: Option<String>,
}

/// What the `done` query parameter of a redirect back to `/me` announces.
fn done_message(done: Option<&str>, lang: Lang) -> Option<&'static str> {
    let key = match done? {
        "profile" => "me.saved_profile",
        "avatar" => "me.saved_avatar",
        "room" => "me.saved_room",
        "cover" => "me.saved_cover",
        _ => return None,
    };
    Some(lang.t(key))
}

async fn me_response(
    app: &App,
    lang: Lang,
    csrf: &Csrf,
    who: &SignedIn,
    status: StatusCode,
    error: FormError,
    done: Option<&'static str>,
) -> Response {
    let user = &who.user;
    let room = if user.kind == UserKind::Registered {
        app.accounts.my_room(who).await.ok()
    } else {
        None
    };
    let me = MePage {
        layout: Layout::for_user(lang, lang.t("me.title"), Some(who)),
        csrf: csrf.token.clone(),
        error,
        done,
        guest: user.kind == UserKind::Guest,
        user_id: user.id.0,
        initial: user.nickname.chars().next().unwrap_or('?').to_string(),
        nickname: user.nickname.clone(),
        username: user.username.clone().unwrap_or_default(),
        email: user.email.clone().unwrap_or_default(),
        avatar_url: user.avatar.as_deref().map(|a| ImageKind::Avatar.url(a)),
        room_name: room.as_ref().map(|r| r.name.clone()).unwrap_or_default(),
        room_description: room
            .as_ref()
            .map(|r| r.description.clone())
            .unwrap_or_default(),
        cover_url: room
            .as_ref()
            .and_then(|r| r.cover.as_deref())
            .map(|c| ImageKind::Cover.url(c)),
    };
    page(app, csrf, status, &me)
}

/// The form's outcome: back to `/me` announcing `done`, or the page again with the error.
async fn me_after(
    app: &App,
    lang: Lang,
    csrf: &Csrf,
    who: &SignedIn,
    result: Result<(), AccountsError>,
    done: &str,
) -> Response {
    match result {
        Ok(()) => see_other(&format!("/me?done={done}"), None),
        Err(e) => {
            // An image refused, or a refusal about no field, is shown by the form's own control.
            let field = field_of(&e).or(match done {
                "avatar" => Some("avatar"),
                "cover" => Some("cover"),
                "profile" => Some("nickname"),
                _ => None,
            });
            let (status, message) = problem(e, lang);
            let error = FormError::new(message, field);
            me_response(app, lang, csrf, who, status, error, None).await
        }
    }
}

pub async fn me_page(
    State(app): State<Arc<App>>,
    lang: Lang,
    PageSigned(who): PageSigned,
    csrf: Csrf,
    Query(query): Query<MeQuery>,
) -> Response {
    let done = done_message(query.done.as_deref(), lang);
    me_response(
        &app,
        lang,
        &csrf,
        &who,
        StatusCode::OK,
        FormError::default(),
        done,
    )
    .await
}

#[derive(Deserialize)]
pub struct ProfileForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    nickname: String,
}

pub async fn profile_submit(
    State(app): State<Arc<App>>,
    lang: Lang,
    PageSigned(who): PageSigned,
    csrf: Csrf,
    PageForm(form): PageForm<ProfileForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let result = app.accounts.set_nickname(&who, &form.nickname).await;
    Ok(me_after(&app, lang, &csrf, &who, result.map(drop), "profile").await)
}

#[derive(Deserialize)]
pub struct RoomForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

pub async fn room_submit(
    State(app): State<Arc<App>>,
    lang: Lang,
    PageSigned(who): PageSigned,
    csrf: Csrf,
    PageForm(form): PageForm<RoomForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let result = app
        .accounts
        .update_my_room(&who, Some(&form.name), Some(&form.description))
        .await;
    if let Ok(room) = &result {
        app.rooms.room_updated(room.clone()).await;
    }
    Ok(me_after(&app, lang, &csrf, &who, result.map(drop), "room").await)
}

/// Reads an image upload form: its CSRF field and its `image` file, within the image limit.
async fn read_image_form(
    app: &App,
    mut multipart: Multipart,
) -> Result<(String, Vec<u8>), PageError> {
    let bad =
        |message: String| PageError(ApiError::new(StatusCode::BAD_REQUEST, "bad_form", message));
    let mut csrf = String::new();
    let mut image = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| bad(e.body_text()))?
    {
        match field.name() {
            Some("csrf") => csrf = field.text().await.map_err(|e| bad(e.body_text()))?,
            Some("image") => {
                image = field
                    .bytes()
                    .await
                    .map_err(|e| bad(e.body_text()))?
                    .to_vec()
            }
            _ => {}
        }
    }
    let limit = app.config.uploads.max_image_bytes;
    if image.len() > limit {
        return Err(PageError(ApiError::payload_too_large(limit as u64)));
    }
    Ok((csrf, image))
}

pub async fn avatar_submit(
    State(app): State<Arc<App>>,
    lang: Lang,
    PageSigned(who): PageSigned,
    csrf: Csrf,
    multipart: Multipart,
) -> Result<Response, PageError> {
    let (submitted, image) = read_image_form(&app, multipart).await?;
    csrf.verify(&submitted)?;
    let result = app.accounts.set_avatar(&who, image).await;
    Ok(me_after(&app, lang, &csrf, &who, result.map(drop), "avatar").await)
}

pub async fn cover_submit(
    State(app): State<Arc<App>>,
    lang: Lang,
    PageSigned(who): PageSigned,
    csrf: Csrf,
    multipart: Multipart,
) -> Result<Response, PageError> {
    let (submitted, image) = read_image_form(&app, multipart).await?;
    csrf.verify(&submitted)?;
    let result = app.accounts.set_room_cover(&who, image).await;
    if let Ok(room) = &result {
        app.rooms.room_updated(room.clone()).await;
    }
    Ok(me_after(&app, lang, &csrf, &who, result.map(drop), "cover").await)
}
