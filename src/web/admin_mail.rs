//! The admin's mail page (`/admin/mail`) and its JSON twins (`/api/v1/admin/mail`): the queued
//! messages with their delivery errors and retries, the latest delivered ones, a message opened
//! (with the outbox transport its text, so an admin can follow a verification link on a LAN
//! without mail), and a test mail to an address the admin types.
//!
//! Thin: parses, calls `app.mailer`, renders. Calls: mail; auth, csrf, admin layout, error.

use std::sync::Arc;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::admin::SignedAdmin;
use crate::app::App;
use crate::config::MailTransport;
use crate::i18n::Lang;
use crate::mail::Opened;
use crate::model::{AuditAction, MailId, QueuedMail, SentMail};

use super::account_pages::{page, see_other, PageForm};
use super::admin_pages::AdminLayout;
use super::admin_stats::moment;
use super::auth::{AdminApi, AdminPage, ClientIp};
use super::csrf::Csrf;
use super::error::{ApiError, PageError};
use super::json::ApiJson;
use super::pages::Speaks as _;
use super::path::ApiPath;
use super::records::Query;

/// A message as the mail page and its JSON list it; `text` only when opened.
#[derive(Serialize)]
struct MailView {
    mail_id: MailId,
    to: String,
    subject: String,
    /// `queued` (not delivered yet) or `sent`.
    state: &'static str,
    created_at: u64,
    /// Failed attempts so far.
    attempts: u32,
    /// Queued: when the next attempt is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<u64>,
    /// Queued: why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

impl MailView {
    fn queued(mail: QueuedMail) -> Self {
        MailView {
            mail_id: mail.id,
            to: mail.to,
            subject: mail.subject,
            state: "queued",
            created_at: mail.created_at,
            attempts: mail.attempts,
            next_attempt_at: Some(mail.next_attempt_at),
            last_error: mail.last_error,
            delivered_at: None,
            text: Some(mail.text).filter(|t| !t.is_empty()),
        }
    }

    fn sent(mail: SentMail) -> Self {
        MailView {
            mail_id: mail.id,
            to: mail.to,
            subject: mail.subject,
            state: "sent",
            created_at: mail.created_at,
            attempts: mail.attempts,
            next_attempt_at: None,
            last_error: None,
            delivered_at: Some(mail.delivered_at),
            text: mail.text,
        }
    }

    fn listed(mut self) -> Self {
        self.text = None;
        self
    }

    /// When it was queued, and when the next attempt is due or it went, as the pages show it.
    fn times(&self) -> (String, String) {
        let then = self.next_attempt_at.or(self.delivered_at);
        (
            moment(self.created_at),
            then.map(moment).unwrap_or_default(),
        )
    }

    /// The text's web links, which the opened page makes clickable.
    fn links(&self) -> Vec<&str> {
        self.text
            .iter()
            .flat_map(|t| t.lines())
            .map(str::trim)
            .filter(|l| l.starts_with("http://") || l.starts_with("https://"))
            .collect()
    }
}

fn transport_name(app: &App) -> &'static str {
    match app.mailer.transport() {
        MailTransport::Outbox => "outbox",
        MailTransport::Smtp => "smtp",
    }
}

async fn overview(app: &App) -> Result<(Vec<MailView>, Vec<MailView>), ApiError> {
    let (queued, sent) = app.mailer.overview().await?;
    Ok((
        queued
            .into_iter()
            .map(|m| MailView::queued(m).listed())
            .collect(),
        sent.into_iter()
            .map(|m| MailView::sent(m).listed())
            .collect(),
    ))
}

async fn opened(app: &App, id: u64) -> Result<MailView, ApiError> {
    Ok(match app.mailer.open(MailId(id)).await? {
        Opened::Queued(mail) => MailView::queued(mail),
        Opened::Sent(mail) => MailView::sent(mail),
    })
}

async fn send_test(
    app: &App,
    admin: &SignedAdmin,
    ip: std::net::IpAddr,
    to: &str,
    lang: Lang,
) -> Result<MailId, ApiError> {
    let to = to.trim();
    let audit = admin.audit(AuditAction::SendTestMail, format!("mail:{to}"), "", ip);
    Ok(app.mailer.send_test(to, audit, lang).await?)
}

/// `GET /api/v1/admin/mail` → `{"transport","queued":[…],"sent":[…]}`.
pub async fn mail_api(
    State(app): State<Arc<App>>,
    _: AdminApi,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (queued, sent) = overview(&app).await?;
    Ok(Json(json!({
        "transport": transport_name(&app),
        "queued": queued,
        "sent": sent,
    })))
}

/// `GET /api/v1/admin/mail/{id}`: one message, with its text under the outbox transport.
pub async fn open_api(
    State(app): State<Arc<App>>,
    _: AdminApi,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(json!(opened(&app, id).await?)))
}

#[derive(Deserialize)]
pub struct TestBody {
    to: String,
}

/// `POST /api/v1/admin/mail/test` `{"to"}` → `202 {"mail_id"}`: queued, delivered as any mail.
pub async fn test_api(
    State(app): State<Arc<App>>,
    lang: Lang,
    AdminApi(admin): AdminApi,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<TestBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let id = send_test(&app, &admin, ip, &body.to, lang).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "mail_id": id }))))
}

#[derive(Template)]
#[template(path = "admin/mail.html")]
struct MailPage {
    layout: AdminLayout,
    transport: &'static str,
    queued: Vec<MailView>,
    sent: Vec<MailView>,
    /// The test mail just queued, after the form's redirect.
    test_queued: bool,
    /// Shown when a message is opened (`/admin/mail/{id}`).
    open: Option<MailView>,
}

/// `GET /admin/mail`: the queue, the latest delivered and the test mail form.
pub async fn mail_page(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    lang: Lang,
    csrf: Csrf,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let test_queued = Query::of(raw).get("notice") == Some("test_queued");
    mail_page_with(&app, lang, &csrf, &admin, test_queued, None).await
}

/// `GET /admin/mail/{id}`: one message opened above the lists.
pub async fn open_page(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    lang: Lang,
    csrf: Csrf,
    ApiPath(id): ApiPath<u64>,
) -> Result<Response, PageError> {
    let open = opened(&app, id).await?;
    mail_page_with(&app, lang, &csrf, &admin, false, Some(open)).await
}

/// The mail page: the queue and the latest delivered, with the test mail's notice or an opened
/// message when there is one.
async fn mail_page_with(
    app: &App,
    lang: Lang,
    csrf: &Csrf,
    admin: &SignedAdmin,
    test_queued: bool,
    open: Option<MailView>,
) -> Result<Response, PageError> {
    let (queued, sent) = overview(app).await?;
    let view = MailPage {
        layout: AdminLayout::new(lang, "admin.nav.mail", csrf, Some(admin)),
        transport: transport_name(app),
        queued,
        sent,
        test_queued,
        open,
    };
    Ok(page(app, csrf, StatusCode::OK, &view))
}

#[derive(Deserialize)]
pub struct TestForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    to: String,
}

/// `POST /admin/mail/test` (the page's form): `303` back to the page.
pub async fn test_submit(
    State(app): State<Arc<App>>,
    lang: Lang,
    AdminPage(admin): AdminPage,
    ClientIp(ip): ClientIp,
    csrf: Csrf,
    PageForm(form): PageForm<TestForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    send_test(&app, &admin, ip, &form.to, lang).await?;
    Ok(see_other("/admin/mail?notice=test_queued", None))
}
