//! The one place where errors become HTTP responses.
//!
//! A program gets [`ApiError`] as `{"error":{"code","message"}}`; a person gets [`PageError`], an
//! HTML page. Each domain error type is mapped to a status and a code here and nowhere else.
//! Server-side failures are logged with their detail and answered with a generic message, so
//! internals never leak to clients.
//!
//! The `code` is English for programs; the `message` is for people and follows the reader's
//! language: the catalogue's `errors.<code>` text, with the values the error carries filled in
//! ([`localize`], the one place that knows the request's language). The domain never sees it.

use askama::Template;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;

use crate::accounts::AccountsError;
use crate::admin::ip_bans::IpBanError;
use crate::admin::moderation::ModerationError;
use crate::admin::AdminError;
use crate::downloads::DownloadsError;
use crate::files::FilesError;
use crate::i18n::Lang;
use crate::mail::MailError;
use crate::media::browser::PublishError;
use crate::records::watch::WatchError;
use crate::records::RecordsError;
use crate::rooms::RoomsError;
use crate::server::websocket::HandshakeError;
use crate::stats::StatsError;
use crate::store::StoreError;

use super::pages::{ErrorPage, Layout};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (rate limits); also `{seconds}` in a translation.
    pub retry_after: Option<u64>,
    /// The values a translation of the message may name, as `{name}`.
    pub args: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            args: Vec::new(),
        }
    }

    /// Names a value for the message's translations.
    pub fn with(mut self, name: &'static str, value: impl std::fmt::Display) -> Self {
        self.args.push((name, value.to_string()));
        self
    }

    /// The message in `lang`: the catalogue's text for the code, else the server's English.
    pub fn message_in(&self, lang: Lang) -> String {
        let Some(text) = lang.get(&format!("errors.{}", self.code)) else {
            return self.message.clone();
        };
        let seconds = self.retry_after.map(|s| s.to_string()).unwrap_or_default();
        let mut args: Vec<(&str, &dyn std::fmt::Display)> =
            vec![("detail", &self.message), ("seconds", &seconds)];
        args.extend(
            self.args
                .iter()
                .map(|(n, v)| (*n, v as &dyn std::fmt::Display)),
        );
        crate::i18n::fill(text, &args)
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "there is nothing at this address",
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this address does not accept that method",
        )
    }

    pub fn payload_too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
        .with("limit", limit)
    }

    /// Over `server.max_connections_per_ip` (`max`).
    pub fn too_many_connections(max: usize) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            format!(
                "your address already has {max} connections open to this server; \
                 close one and try again"
            ),
        )
        .with("max", max);
        error.retry_after = Some(1);
        error
    }

    /// A failure on our side: logged in full, answered without detail.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on the server; the problem was logged",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Backend(_) | StoreError::TaskFailed => {
                tracing::error!(error = %e, "store failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the database is not available right now; try again shortly",
                )
            }
            other => ApiError::internal(&other),
        }
    }
}

impl From<WatchError> for ApiError {
    fn from(e: WatchError) -> Self {
        let message = e.to_string();
        let (status, code) = match e {
            WatchError::NoSuchRecord => (StatusCode::NOT_FOUND, "record_not_found"),
            WatchError::NoSuchView => (StatusCode::NOT_FOUND, "view_not_found"),
            WatchError::NotYourRecord => (StatusCode::FORBIDDEN, "not_your_record"),
            WatchError::TooManyViews => (StatusCode::SERVICE_UNAVAILABLE, "too_many_views"),
            WatchError::Store(e) => return e.into(),
        };
        ApiError::new(status, code, message)
    }
}

impl From<AccountsError> for ApiError {
    fn from(e: AccountsError) -> Self {
        use AccountsError as E;
        let message = e.to_string();
        let (status, code) = match e {
            E::InvalidUsername(_) => (StatusCode::BAD_REQUEST, "invalid_username"),
            E::InvalidPassword(_) => (StatusCode::BAD_REQUEST, "invalid_password"),
            E::InvalidEmail(_) => (StatusCode::BAD_REQUEST, "invalid_email"),
            E::InvalidNickname(_) => (StatusCode::BAD_REQUEST, "invalid_nickname"),
            E::InvalidRoomName(_) => (StatusCode::BAD_REQUEST, "invalid_room_name"),
            E::InvalidDescription(_) => (StatusCode::BAD_REQUEST, "invalid_description"),
            E::InvalidLogin(_) => (StatusCode::BAD_REQUEST, "invalid_login"),
            E::UsernameTaken => (StatusCode::CONFLICT, "username_taken"),
            E::EmailTaken => (StatusCode::CONFLICT, "email_taken"),
            E::UsernamePending(wait) => {
                return ApiError::new(StatusCode::CONFLICT, "username_pending", message)
                    .with("minutes", wait.as_secs().div_ceil(60))
            }
            E::EmailPending(wait) => {
                return ApiError::new(StatusCode::CONFLICT, "email_pending", message)
                    .with("minutes", wait.as_secs().div_ceil(60))
            }
            E::UnknownAccount => (StatusCode::NOT_FOUND, "unknown_account"),
            E::AlreadyVerified => (StatusCode::CONFLICT, "already_verified"),
            E::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            E::EmailNotVerified => (StatusCode::FORBIDDEN, "email_not_verified"),
            E::NotLoggedIn => (StatusCode::UNAUTHORIZED, "not_logged_in"),
            E::SessionExpired => (StatusCode::UNAUTHORIZED, "session_expired"),
            E::RegisteredOnly => (StatusCode::FORBIDDEN, "registered_only"),
            E::RateLimited(wait) => {
                let mut error =
                    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
                error.retry_after = Some(wait.as_secs().max(1));
                return error;
            }
            E::Image(FilesError::Empty) => (StatusCode::BAD_REQUEST, "empty_upload"),
            E::Image(FilesError::NotAnImage | FilesError::Undecodable(_)) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_image")
            }
            E::Image(FilesError::TooLarge { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "image_too_large")
            }
            E::Image(FilesError::Busy(wait)) => {
                let mut error =
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_busy", message);
                error.retry_after = Some(wait.as_secs().max(1));
                return error;
            }
            E::Image(FilesError::NotFound) => return ApiError::not_found(),
            E::Image(FilesError::Io(io)) => return ApiError::internal(&io),
            E::Hashing(detail) => return ApiError::internal(&detail),
            E::Store(store) => return store.into(),
        };
        ApiError::new(status, code, message)
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        let (status, code) = match &e {
            PublishError::Disabled => (StatusCode::FORBIDDEN, "publish_disabled"),
            PublishError::AlreadyPublishing => (StatusCode::CONFLICT, "already_publishing"),
            PublishError::NotWebm | PublishError::NoVideo => {
                (StatusCode::UNPROCESSABLE_ENTITY, "bad_stream")
            }
            PublishError::TooFast { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_fast"),
            PublishError::TooSlow { .. } => (StatusCode::SERVICE_UNAVAILABLE, "too_slow"),
            PublishError::Spawn { .. } => {
                tracing::error!(error = %e, "cannot start a browser push");
                (StatusCode::SERVICE_UNAVAILABLE, "push_failed")
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<RoomsError> for ApiError {
    fn from(e: RoomsError) -> Self {
        let message = e.to_string();
        let (status, code) = match e {
            RoomsError::NoSuchRoom => (StatusCode::NOT_FOUND, "room_not_found"),
            RoomsError::RoomNotOpen => (StatusCode::NOT_FOUND, "room_not_open"),
            RoomsError::NoSuchUser => (StatusCode::NOT_FOUND, "user_not_found"),
            RoomsError::NotBanned => (StatusCode::NOT_FOUND, "not_banned"),
            RoomsError::NotLive => (StatusCode::NOT_FOUND, "room_not_live"),
            RoomsError::NoSuchDanmaku => (StatusCode::NOT_FOUND, "danmaku_not_found"),
            RoomsError::LedgerFailed => (StatusCode::INTERNAL_SERVER_ERROR, "ledger_failed"),
            RoomsError::NotPublisher => (StatusCode::FORBIDDEN, "not_publisher"),
            RoomsError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "server_shutdown"),
            RoomsError::Store(store) => return store.into(),
        };
        ApiError::new(status, code, message)
    }
}

impl From<HandshakeError> for ApiError {
    fn from(e: HandshakeError) -> Self {
        let status = match e {
            HandshakeError::NotGet => StatusCode::METHOD_NOT_ALLOWED,
            HandshakeError::NotUpgradable => StatusCode::UPGRADE_REQUIRED,
            HandshakeError::NotUpgrade | HandshakeError::Version | HandshakeError::NoKey => {
                StatusCode::BAD_REQUEST
            }
        };
        ApiError::new(status, "not_websocket", e.to_string())
    }
}

impl IntoResponse for HandshakeError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        use AdminError as E;
        let message = e.to_string();
        let (status, code) = match e {
            E::InvalidName(_) => (StatusCode::BAD_REQUEST, "invalid_name"),
            E::InvalidPassword(_) => (StatusCode::BAD_REQUEST, "invalid_password"),
            E::NameTaken => (StatusCode::CONFLICT, "admin_exists"),
            E::NoSuchAdmin => (StatusCode::NOT_FOUND, "admin_not_found"),
            E::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            E::AdminRequired => (StatusCode::UNAUTHORIZED, "admin_required"),
            E::SetupInvalid => (StatusCode::FORBIDDEN, "setup_token_invalid"),
            E::SetupDone => (StatusCode::GONE, "setup_done"),
            E::ReasonTooLong(_) | E::ReasonRequired => (StatusCode::BAD_REQUEST, "invalid_reason"),
            E::InvalidBanEnd(_) => (StatusCode::BAD_REQUEST, "invalid_until"),
            E::NoSuchUser => (StatusCode::NOT_FOUND, "user_not_found"),
            E::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            E::RateLimited(wait) => {
                let mut error =
                    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
                error.retry_after = Some(wait.as_secs().max(1));
                return error;
            }
            E::Hashing(detail) => return ApiError::internal(&detail),
            E::Store(store) => return store.into(),
        };
        ApiError::new(status, code, message)
    }
}

impl From<ModerationError> for ApiError {
    fn from(e: ModerationError) -> Self {
        match e {
            ModerationError::Admin(e) => e.into(),
            ModerationError::Accounts(e) => e.into(),
            ModerationError::Rooms(e) => e.into(),
            ModerationError::Records(e) => e.into(),
            ModerationError::Store(e) => e.into(),
        }
    }
}

impl From<MailError> for ApiError {
    fn from(e: MailError) -> Self {
        let message = e.to_string();
        let (status, code) = match e {
            MailError::InvalidAddress(_) => (StatusCode::BAD_REQUEST, "invalid_email"),
            MailError::NoSuchMail => (StatusCode::NOT_FOUND, "mail_not_found"),
            MailError::RateLimited(wait) => {
                let mut error =
                    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
                error.retry_after = Some(wait.as_secs().max(1));
                return error;
            }
            MailError::Store(store) => return store.into(),
            MailError::Smtp { .. } | MailError::Outbox { .. } => {
                return ApiError::internal(&message)
            }
        };
        ApiError::new(status, code, message)
    }
}

impl From<IpBanError> for ApiError {
    fn from(e: IpBanError) -> Self {
        use IpBanError as E;
        let message = e.to_string();
        let (status, code) = match e {
            E::InvalidRange(_) => (StatusCode::BAD_REQUEST, "invalid_ip_range"),
            E::TooWide(_) => (StatusCode::BAD_REQUEST, "ip_range_too_wide"),
            E::InvalidUntil => (StatusCode::BAD_REQUEST, "invalid_until"),
            E::TooMany(_) => (StatusCode::CONFLICT, "too_many_ip_bans"),
            E::NotFound => (StatusCode::NOT_FOUND, "ip_ban_not_found"),
            E::Banned { .. } => (StatusCode::FORBIDDEN, "ip_banned"),
            E::Store(store) => return store.into(),
        };
        ApiError::new(status, code, message)
    }
}

impl From<DownloadsError> for ApiError {
    fn from(e: DownloadsError) -> Self {
        use DownloadsError as E;
        let message = e.to_string();
        let (status, code) = match e {
            E::InvalidFilename(_) => (StatusCode::BAD_REQUEST, "invalid_filename"),
            E::InvalidTitle(_) => (StatusCode::BAD_REQUEST, "invalid_title"),
            E::InvalidVersion(_) => (StatusCode::BAD_REQUEST, "invalid_version"),
            E::InvalidDescription(_) => (StatusCode::BAD_REQUEST, "invalid_description"),
            E::Empty => (StatusCode::BAD_REQUEST, "empty_upload"),
            E::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            E::NotFound => (StatusCode::NOT_FOUND, "download_not_found"),
            E::Io(io) => return ApiError::internal(&io),
            E::Store(store) => return store.into(),
        };
        ApiError::new(status, code, message)
    }
}

impl From<RecordsError> for ApiError {
    fn from(e: RecordsError) -> Self {
        use RecordsError as E;
        let message = e.to_string();
        let (status, code) = match e {
            E::NotFound => (StatusCode::NOT_FOUND, "record_not_found"),
            E::UserNotFound => (StatusCode::NOT_FOUND, "user_not_found"),
            E::CommentNotFound => (StatusCode::NOT_FOUND, "comment_not_found"),
            E::NotYourRecord => (StatusCode::FORBIDDEN, "not_your_record"),
            E::NotYourComment => (StatusCode::FORBIDDEN, "not_your_comment"),
            E::RegisteredOnly => (StatusCode::FORBIDDEN, "registered_only"),
            E::NotVerified => (StatusCode::FORBIDDEN, "email_not_verified"),
            E::ChatBanned => (StatusCode::FORBIDDEN, "chat_banned"),
            E::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            E::InvalidTitle(_) => (StatusCode::BAD_REQUEST, "invalid_title"),
            E::EmptyComment => (StatusCode::BAD_REQUEST, "empty_comment"),
            E::CommentTooLong(_) => (StatusCode::BAD_REQUEST, "comment_too_long"),
            E::InvisibleCharacters(_) => (StatusCode::BAD_REQUEST, "invisible_characters"),
            E::InvalidPosition(_) => (StatusCode::BAD_REQUEST, "invalid_position"),
            E::RateLimited(wait) => {
                let mut error =
                    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
                error.retry_after = Some(wait.as_secs().max(1));
                return error;
            }
            E::Store(store) => return store.into(),
        };
        ApiError::new(status, code, message)
    }
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(serde::Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

/// An error answer as it left its handler, kept on the response so that [`localize`] can say
/// it again in the reader's language.
#[derive(Clone)]
struct Said {
    error: ApiError,
    /// A page for a person rather than JSON for a program.
    page: bool,
}

impl ApiError {
    fn json_in(&self, lang: Lang) -> Response {
        let message = self.message_in(lang);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }

    fn page_in(&self, lang: Lang) -> Response {
        let page = ErrorPage {
            layout: Layout::new(
                lang,
                lang.get(&format!("status.{}", self.status.as_u16()))
                    .or(self.status.canonical_reason())
                    .unwrap_or("Error"),
            ),
            status: self.status.as_u16(),
            message: self.message_in(lang),
        };
        let mut response = match page.render() {
            Ok(html) => (self.status, Html(html)).into_response(),
            Err(e) => ApiError::internal(&e).into_response(),
        };
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.json_in(Lang::En);
        response.extensions_mut().insert(Said {
            error: self,
            page: false,
        });
        response
    }
}

impl From<StatsError> for ApiError {
    fn from(e: StatsError) -> Self {
        let message = e.to_string();
        let (status, code) = match e {
            StatsError::InvalidDate { .. } => (StatusCode::BAD_REQUEST, "invalid_date"),
            StatsError::Reversed { .. } => (StatusCode::BAD_REQUEST, "invalid_range"),
            StatsError::RangeTooLong { .. } => (StatusCode::BAD_REQUEST, "range_too_long"),
            StatsError::NoSuchSection(_) => (StatusCode::NOT_FOUND, "not_found"),
            StatsError::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            StatsError::Store(store) => return store.into(),
        };
        ApiError::new(status, code, message)
    }
}

/// The same error, for a person in a browser.
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mut response = self.0.page_in(Lang::En);
        response.extensions_mut().insert(Said {
            error: self.0,
            page: true,
        });
        response
    }
}

/// Middleware: says an error answer again in the reader's language. Answers are made in
/// English first, so that one made outside the router (the per-IP cap) is still whole; here the
/// body is replaced and every header the inner layers set is kept.
pub async fn localize(req: Request, next: Next) -> Response {
    let lang = super::language::of_request(req.headers());
    let mut response = next.run(req).await;
    if lang == Lang::En {
        return response;
    }
    let Some(said) = response.extensions_mut().remove::<Said>() else {
        return response;
    };
    let again = if said.page {
        said.error.page_in(lang)
    } else {
        said.error.json_in(lang)
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::new(again.into_body()))
}

/// Whether a request is from a program (JSON API, media callbacks, a WebSocket handshake, which
/// only scripts make, or an explicit JSON `Accept`) rather than a browser, so that errors
/// outside any handler get the right shape.
pub fn wants_json(uri: &Uri, headers: &HeaderMap) -> bool {
    let path = uri.path();
    if path.starts_with("/api/")
        || path.starts_with("/hooks/")
        || path == "/healthz"
        || path == "/ws"
    {
        return true;
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("application/json") && !accept.contains("text/html")
}

/// Answers an error in the shape the client expects.
pub fn respond(uri: &Uri, headers: &HeaderMap, error: ApiError) -> Response {
    if wants_json(uri, headers) {
        error.into_response()
    } else {
        PageError(error).into_response()
    }
}

pub async fn not_found(uri: Uri, headers: HeaderMap) -> Response {
    respond(&uri, &headers, ApiError::not_found())
}

pub async fn method_not_allowed(uri: Uri, headers: HeaderMap) -> Response {
    respond(&uri, &headers, ApiError::method_not_allowed())
}
