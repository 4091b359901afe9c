//! Mail delivery through a real SMTP server (aiosmtpd, `common::smtp`): STARTTLS and TLS with
//! AUTH, certificate checking, wrong credentials and 5xx refusals, each seen from both ends —
//! what the SMTP server saw, and the app's mail queue (attempts, last error) or its log.
//!
//! What src/mail.rs and the docs promise: mail that cannot be delivered, for whatever reason,
//! stays queued and is retried with back-off until it goes out; nothing is ever given up, so a
//! permanent 5xx refusal is retried too.
//!
//! The app only trusts the system's root certificates (`email.smtp` has no setting for a CA of
//! one's own), which rustls-native-certs takes from `SSL_CERT_FILE` when that is set. So the
//! tests that deliver over TLS run the real binary as a child process with `SSL_CERT_FILE`
//! naming the test CA; setting it in this process would change it for every test at once.

use std::path::Path;

use std::time::Duration;

use reqwest::StatusCode;
use roommanager::config::{Config, SmtpSecurity};
use serde_json::json;

use crate::accounts::{
    app_mailing_to, assert_first_verification, click, login, register, relaxed, send, smtp_on,
    PASSWORD,
};
use crate::common::smtp::{
    self, Event, SmtpServer, TlsMode, AUTH_INVALID, AUTH_INVALID_TEXT, DATA_REFUSED,
    DATA_REFUSED_TEXT, RCPT_REFUSED, RCPT_REFUSED_TEXT,
};
use crate::common::{Process, TestServer};

const WAIT: Duration = Duration::from_secs(20);
const SMTP_USER: &str = "roommanager";
const SMTP_PASSWORD: &str = "s3cret pass";

/// Sends through the SMTP server on 127.0.0.1:`port` with `security`, as `user`.
fn smtp_auth_on(c: &mut Config, port: u16, security: SmtpSecurity, user: &str, password: &str) {
    smtp_on(c, port);
    c.email.smtp.security = security;
    c.email.smtp.username = user.to_owned();
    c.email.smtp.password = password.to_owned();
}

fn count(events: &[Event], wanted: impl Fn(&Event) -> bool) -> usize {
    events.iter().filter(|e| wanted(e)).count()
}

fn last_error(mail: &roommanager::model::QueuedMail) -> String {
    mail.last_error.clone().unwrap_or_default()
}

/// Asserts that `error` (recorded or logged by the app) reports the SMTP reply `code` with the
/// server's `text`, i.e. the refusal the test caused and not some other failure.
#[track_caller]
fn assert_reports_reply(error: &str, code: u16, text: &str) {
    assert!(
        error.contains(&code.to_string()) && error.contains(text),
        "the error reports the SMTP reply {code} {text:?}: {error}"
    );
}

// ---------------------------------------------------------------------------------------------
// TLS and AUTH, with the binary trusting the test CA
// ---------------------------------------------------------------------------------------------

/// The real `roommanager` binary in a child process trusting only the certificates in
/// `ca_cert` (through `SSL_CERT_FILE`, set for that process alone).
fn serve_trusting(data_dir: &Path, config: &str, ca_cert: &Path) -> Process {
    Process::serve_with_env(
        data_dir,
        config,
        &[
            ("SSL_CERT_FILE", Some(ca_cert.as_os_str())),
            ("SSL_CERT_DIR", None),
        ],
    )
}

async fn register_at(app: &Process, username: &str, email: &str) {
    send(
        reqwest::Client::new()
            .post(format!("{}/api/v1/register", app.base))
            .json(&json!({"username": username, "password": PASSWORD, "email": email})),
    )
    .await
    .expect(StatusCode::CREATED);
}

/// Opens the path and query of an emailed link on `app`.
async fn click_at(app: &Process, link: &str) -> crate::accounts::Reply {
    let path = &link[link.find("/verify?").expect("a verification link")..];
    send(reqwest::Client::new().get(format!("{}{path}", app.base))).await
}

/// Asserts that `mail` refused `to` at least twice (the first try and a retry), each time at
/// `command` with `code`.
#[track_caller]
fn assert_refused_each_time(mail: &SmtpServer, to: &str, command: &str, code: u16) {
    let refusals = mail.refusals_to(to);
    assert!(
        refusals.len() >= 2 && refusals.iter().all(|(c, n)| c == command && *n == code),
        "{refusals:?}"
    );
}

fn smtp_config(port: u16, security: &str, password: &str) -> String {
    format!(
        "[email]\ntransport = \"smtp\"\nretry_min_secs = 1\nretry_max_secs = 2\n\
         [email.smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"{security}\"\n\
         username = \"{SMTP_USER}\"\npassword = \"{password}\"\ntimeout_secs = 5\n"
    )
}

/// Registers through the binary configured for `security` against a server in `mode` that
/// requires AUTH; checks the mail went out encrypted, authenticated, exactly once.
async fn delivers_encrypted_and_authenticated(mode: TlsMode, security: &str) {
    if !smtp::tls_available() {
        return;
    }
    let mail = SmtpServer::options()
        .tls(mode)
        .auth(SMTP_USER, SMTP_PASSWORD)
        .start();
    let data = tempfile::tempdir().expect("temp dir");
    let mut app = serve_trusting(
        data.path(),
        &smtp_config(mail.port, security, SMTP_PASSWORD),
        mail.ca_cert(),
    );
    register_at(&app, "tess", "tess@example.com").await;
    let delivered = app.expect_log(&["mail delivered", "tess@example.com"]);

    let mails = mail.mails();
    assert_eq!(mails.len(), 1, "one mail, delivered once: {mails:#?}");
    let message = &mails[0];
    assert_eq!(message.to, ["tess@example.com"], "{delivered}");
    assert!(message.tls, "delivered over TLS: {message:?}");
    assert_eq!(message.login.as_deref(), Some(SMTP_USER), "{message:?}");
    let events = mail.events();
    assert_eq!(
        mail.auths(),
        [(SMTP_USER.to_owned(), true)],
        "one AUTH, accepted: {events:#?}"
    );
    assert!(
        events.iter().all(|e| match e {
            Event::Auth { tls, .. } | Event::MailFrom { tls, .. } => *tls,
            _ => true,
        }),
        "neither the password nor the envelope went out in plain text: {events:#?}"
    );
    if mode == TlsMode::Starttls {
        assert_eq!(count(&events, |e| matches!(e, Event::Starttls)), 1);
    }
    assert_first_verification(&click_at(&app, &message.verify_link()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_auth_delivers_the_mail_encrypted_and_authenticated() {
    delivers_encrypted_and_authenticated(TlsMode::Starttls, "starttls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_from_the_first_byte_with_auth_delivers_the_mail() {
    delivers_encrypted_and_authenticated(TlsMode::Implicit, "tls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_over_starttls_is_refused_535_logged_and_retried() {
    if !smtp::tls_available() {
        return;
    }
    let mail = SmtpServer::options()
        .tls(TlsMode::Starttls)
        .auth(SMTP_USER, SMTP_PASSWORD)
        .start();
    let data = tempfile::tempdir().expect("temp dir");
    let mut app = serve_trusting(
        data.path(),
        &smtp_config(mail.port, "starttls", "not the password"),
        mail.ca_cert(),
    );
    register_at(&app, "walt", "walt@example.com").await;
    let needles = |attempts: &'static str| {
        [
            "mail delivery failed; it stays queued and will be retried",
            "walt@example.com",
            attempts,
        ]
    };
    let first = app.expect_log(&needles("attempts=1"));
    assert_reports_reply(&first, AUTH_INVALID, AUTH_INVALID_TEXT);
    let second = app.expect_log(&needles("attempts=2"));
    assert_reports_reply(&second, AUTH_INVALID, AUTH_INVALID_TEXT);

    let events = mail.events();
    let auths = mail.auths();
    assert!(
        auths.len() >= 2 && auths.iter().all(|(user, ok)| user == SMTP_USER && !ok),
        "every attempt authenticated as {SMTP_USER} and was refused: {events:#?}"
    );
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, Event::Auth { tls: false, .. })),
        "the password only went over TLS: {events:#?}"
    );
    assert_eq!(mail.mails().len(), 0, "nothing delivered: {events:#?}");
    assert!(
        !app.log.iter().any(|l| l.contains("mail delivered")),
        "{}",
        app.log.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// TLS that must not happen: an untrusted certificate, a server without STARTTLS
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_certificate_the_app_does_not_trust_gets_neither_the_password_nor_the_mail() {
    if !smtp::tls_available() {
        return;
    }
    // The server's certificate comes from the test CA, which this process does not trust.
    let mail = SmtpServer::options()
        .tls(TlsMode::Starttls)
        .auth(SMTP_USER, SMTP_PASSWORD)
        .start();
    let port = mail.port;
    let server = TestServer::start_with(|c| {
        relaxed(c);
        smtp_auth_on(c, port, SmtpSecurity::Starttls, SMTP_USER, SMTP_PASSWORD);
    })
    .await;
    register(&server, "ursula", "ursula@example.com")
        .await
        .expect(StatusCode::CREATED);

    let queued = smtp::wait_for_failed_attempts(&server, "ursula@example.com", 2).await;
    let error = last_error(&queued);
    assert!(
        error.to_lowercase().contains("certificate"),
        "the recorded error names the certificate: {error}"
    );
    let events = mail.events();
    assert!(
        count(&events, |e| matches!(e, Event::Starttls)) >= 2,
        "each attempt asked for STARTTLS: {events:#?}"
    );
    assert_eq!(
        count(&events, |e| matches!(
            e,
            Event::Auth { .. } | Event::MailFrom { .. } | Event::Delivered(_)
        )),
        0,
        "no AUTH, no envelope, no message: {events:#?}"
    );
}

#[tokio::test]
async fn starttls_required_but_not_offered_sends_nothing_in_plain_text() {
    if !smtp::available() {
        return;
    }
    let mail = SmtpServer::start(); // plain: no STARTTLS in its EHLO answer
    let port = mail.port;
    let server = TestServer::start_with(|c| {
        relaxed(c);
        smtp_auth_on(c, port, SmtpSecurity::Starttls, SMTP_USER, SMTP_PASSWORD);
    })
    .await;
    register(&server, "vera", "vera@example.com")
        .await
        .expect(StatusCode::CREATED);

    let queued = smtp::wait_for_failed_attempts(&server, "vera@example.com", 2).await;
    let error = last_error(&queued);
    assert!(
        error.contains("STARTTLS"),
        "the recorded error names STARTTLS: {error}"
    );
    let events = mail.events();
    assert!(
        count(&events, |e| matches!(e, Event::Ehlo { tls: false })) >= 2,
        "each attempt connected and said EHLO: {events:#?}"
    );
    assert_eq!(
        count(&events, |e| matches!(
            e,
            Event::Auth { .. } | Event::MailFrom { .. } | Event::Delivered(_)
        )),
        0,
        "nothing went out unencrypted: {events:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Refusals: wrong credentials and 5xx answers stay queued, are retried, go out once accepted
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_wrong_password_is_refused_535_kept_and_sent_once_after_a_restart_with_the_right_one() {
    if !smtp::available() {
        return;
    }
    // AUTH on a plain connection here, so that the app's own store can be looked at.
    let mail = SmtpServer::options()
        .auth(SMTP_USER, SMTP_PASSWORD)
        .auth_plaintext()
        .start();
    let port = mail.port;
    let with_password = move |password: &'static str| {
        move |c: &mut Config| {
            relaxed(c);
            smtp_auth_on(c, port, SmtpSecurity::None, SMTP_USER, password);
        }
    };
    let server = TestServer::start_with(with_password("wrong")).await;
    register(&server, "wendy", "wendy@example.com")
        .await
        .expect(StatusCode::CREATED);

    let queued = smtp::wait_for_failed_attempts(&server, "wendy@example.com", 2).await;
    let error = last_error(&queued);
    assert_reports_reply(&error, AUTH_INVALID, AUTH_INVALID_TEXT);
    let events = mail.events();
    assert!(
        mail.auths().len() >= 2 && mail.auths().iter().all(|(_, ok)| !ok),
        "{events:#?}"
    );
    assert_eq!(
        count(&events, |e| matches!(
            e,
            Event::MailFrom { .. } | Event::Delivered(_)
        )),
        0,
        "no mail without AUTH: {events:#?}"
    );

    let data = server.stop_keep_data().await;
    let server = TestServer::start_in(data, with_password(SMTP_PASSWORD)).await;
    let message = mail.wait_for_mail("wendy@example.com", WAIT).await;
    smtp::wait_for_empty_queue(&server).await;
    assert_eq!(
        mail.mails().len(),
        1,
        "the kept mail, once: {:#?}",
        mail.events()
    );
    assert_eq!(message.login.as_deref(), Some(SMTP_USER));
    assert_first_verification(&click(&server, &message.verify_link()).await);
    login(&server, "wendy", PASSWORD)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn a_recipient_refused_550_is_retried_without_holding_up_other_mail() {
    if !smtp::available() {
        return;
    }
    let mail = SmtpServer::options().reject_rcpt("bounce").start();
    let server = app_mailing_to(mail.port, |_| {}).await;
    // Queued first, so each round of delivery tries it before the other one.
    register(&server, "bounce", "bounce@example.com")
        .await
        .expect(StatusCode::CREATED);
    register(&server, "fine", "fine@example.com")
        .await
        .expect(StatusCode::CREATED);

    let queued = smtp::wait_for_failed_attempts(&server, "bounce@example.com", 2).await;
    let error = last_error(&queued);
    assert_reports_reply(&error, RCPT_REFUSED, RCPT_REFUSED_TEXT);
    assert_refused_each_time(&mail, "bounce@example.com", "RCPT", RCPT_REFUSED);
    assert_eq!(mail.mails_to("bounce@example.com").len(), 0);
    // The other mail goes out meanwhile, once, and leaves the queue.
    mail.wait_for_mail("fine@example.com", WAIT).await;
    assert_eq!(mail.mails_to("fine@example.com").len(), 1);
    let queue = crate::common::wait_for(|| async {
        let queue = smtp::mail_queue(&server).await;
        (queue.len() == 1).then_some(queue)
    })
    .await;
    assert_eq!(
        queue.iter().map(|m| m.to.as_str()).collect::<Vec<_>>(),
        ["bounce@example.com"],
        "{queue:#?}"
    );

    // Still queued, not given up: once the recipient is accepted, it goes out, once.
    mail.accept_all();
    mail.wait_for_mail("bounce@example.com", WAIT).await;
    smtp::wait_for_empty_queue(&server).await;
    assert_eq!(mail.mails_to("bounce@example.com").len(), 1);
    assert_eq!(mail.mails().len(), 2, "{:#?}", mail.events());
}

#[tokio::test]
async fn a_message_refused_554_at_data_is_retried_and_delivered_once_accepted() {
    if !smtp::available() {
        return;
    }
    let mail = SmtpServer::options().reject_data("").start();
    let server = app_mailing_to(mail.port, |_| {}).await;
    register(&server, "dora", "dora@example.com")
        .await
        .expect(StatusCode::CREATED);

    let queued = smtp::wait_for_failed_attempts(&server, "dora@example.com", 2).await;
    let error = last_error(&queued);
    assert_reports_reply(&error, DATA_REFUSED, DATA_REFUSED_TEXT);
    assert_refused_each_time(&mail, "dora@example.com", "DATA", DATA_REFUSED);
    assert_eq!(mail.mails().len(), 0);

    mail.accept_all();
    let message = mail.wait_for_mail("dora@example.com", WAIT).await;
    smtp::wait_for_empty_queue(&server).await;
    assert_eq!(
        mail.mails().len(),
        1,
        "a refused DATA left no copy behind: {:#?}",
        mail.events()
    );
    assert_first_verification(&click(&server, &message.verify_link()).await);
}
