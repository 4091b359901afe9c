//! The admin's mail page over real HTTP: with the outbox transport a new registration's
//! verification mail is listed and opened, and its link verifies the account when followed; a
//! test mail goes through a real SMTP server (aiosmtpd) and arrives, rate-limited per address
//! like every mail; a delivery failure (the SMTP server down) shows with its error and retries,
//! and the message moves to the sent list once the server is up.

use reqwest::header::COOKIE;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::accounts::{
    app_mailing_to, assert_first_verification, click, email_of, get_auth, login_token, register,
    relaxed, send, Reply,
};
use crate::admin::{admin_token, audit, make_admin, ADMIN_PASSWORD};
use crate::common::smtp::{self, SmtpServer};
use crate::common::{wait_for, TestServer};
use crate::web_hardening::{form_token, post_form_at};

const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

async fn admin_of(server: &TestServer) -> String {
    make_admin(server, "root");
    admin_token(&server.base, "root", ADMIN_PASSWORD).await
}

async fn page(server: &TestServer, admin: &str, path: &str) -> Reply {
    send(
        reqwest::Client::new()
            .get(server.url(path))
            .header(COOKIE, format!("rm_admin={admin}")),
    )
    .await
}

async fn mail_json(server: &TestServer, admin: &str) -> Value {
    get_auth(server, "/api/v1/admin/mail", admin)
        .await
        .expect(StatusCode::OK)
        .json()
}

/// Submits the mail page's test form to `to`.
async fn test_form(server: &TestServer, admin: &str, to: &str) -> Reply {
    let csrf = form_token(&page(server, admin, "/admin/mail").await.text);
    post_form_at(
        server.url("/admin/mail/test"),
        &format!("rm_admin={admin}"),
        &format!("csrf={csrf}&to={}", to.replace('@', "%40")),
    )
    .await
}

async fn test_api(server: &TestServer, admin: &str, to: &str) -> Reply {
    send(
        reqwest::Client::new()
            .post(server.url("/api/v1/admin/mail/test"))
            .bearer_auth(admin)
            .json(&json!({ "to": to })),
    )
    .await
}

#[tokio::test]
async fn the_outbox_page_opens_a_verification_mail_whose_link_verifies_the_account() {
    let server = TestServer::start_with(relaxed).await;
    let admin = admin_of(&server).await;
    register(&server, "mona", &email_of("mona"))
        .await
        .expect(StatusCode::CREATED);

    // Written to the outbox by the delivery loop: listed as sent, with its id.
    let listed = wait_for(|| async {
        let body = mail_json(&server, &admin).await;
        body["sent"][0]["mail_id"].as_u64().map(|_| body)
    })
    .await;
    assert_eq!(listed["transport"], "outbox");
    let sent = &listed["sent"][0];
    assert_eq!(sent["to"], email_of("mona"));
    assert!(sent.get("text").is_none(), "the list has no text: {sent}");
    let id = sent["mail_id"].as_u64().expect("a mail id");
    let shown = page(&server, &admin, "/admin/mail")
        .await
        .expect(StatusCode::OK);
    for text in [
        "Written to the outbox",
        "mona@example.com",
        &format!("href=\"/admin/mail/{id}\""),
        "href=\"/admin/mail\" aria-current=\"page\"",
    ] {
        assert!(shown.text.contains(text), "{text} not in:\n{}", shown.text);
    }

    // Opened: the text and its link, which verifies mona when followed.
    let opened = page(&server, &admin, &format!("/admin/mail/{id}"))
        .await
        .expect(StatusCode::OK);
    let marker = "class=\"mail-link\">";
    let at = opened.text.find(marker).expect("a clickable link") + marker.len();
    let link = opened.text[at..]
        .split('<')
        .next()
        .expect("the link")
        .to_owned();
    assert!(link.contains("/verify?token="), "{link}");
    let json = get_auth(&server, &format!("/api/v1/admin/mail/{id}"), &admin)
        .await
        .expect(StatusCode::OK)
        .json();
    assert!(
        json["text"].as_str().expect("a text").contains(&link),
        "{json}"
    );
    assert_first_verification(&click(&server, &link).await);
    login_token(&server, "mona").await;

    // An unknown id: not found, as JSON and as a page.
    get_auth(&server, "/api/v1/admin/mail/999999", &admin)
        .await
        .expect_error(StatusCode::NOT_FOUND, "mail_not_found");
    page(&server, &admin, "/admin/mail/999999")
        .await
        .expect(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_test_mail_arrives_through_smtp_and_is_limited_per_address() {
    if !smtp::available() {
        return;
    }
    let mail = SmtpServer::start();
    let server = app_mailing_to(mail.port, |c| c.limits.email_per_address = 2).await;
    let admin = admin_of(&server).await;

    // Without the form's CSRF token: refused, nothing sent.
    let forged = post_form_at(
        server.url("/admin/mail/test"),
        &format!("rm_admin={admin}"),
        "to=ops%40example.com",
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);

    let done = test_form(&server, &admin, "ops@example.com").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    assert_eq!(
        done.header("location").as_deref(),
        Some("/admin/mail?notice=test_queued")
    );
    let arrived = mail.wait_for_mail("ops@example.com", WAIT).await;
    assert_eq!(arrived.subject, "RoomManager test mail");
    assert!(arrived.text.contains("\"root\""), "{}", arrived.text);
    smtp::wait_for_empty_queue(&server).await;

    // Listed as sent; opened, it keeps no text (it went to its recipient alone).
    let body = mail_json(&server, &admin).await;
    assert_eq!(body["transport"], "smtp");
    assert_eq!(body["sent"][0]["to"], "ops@example.com", "{body}");
    let id = body["sent"][0]["mail_id"].as_u64().expect("a mail id");
    let opened = page(&server, &admin, &format!("/admin/mail/{id}"))
        .await
        .expect(StatusCode::OK);
    assert!(opened.contains("its text went to its recipient alone"));
    assert!(!opened.contains("sent this test mail"), "{}", opened.text);
    let entry = &audit(&server.base, &admin, "").await["entries"][0];
    assert_eq!(
        (&entry["action"], &entry["target"]),
        (&json!("send_test_mail"), &json!("mail:ops@example.com"))
    );

    // Two per address per window: the third is refused, another address still served.
    test_api(&server, &admin, "OPS@example.com")
        .await
        .expect(StatusCode::ACCEPTED);
    test_api(&server, &admin, "ops@example.com")
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    for bad in [
        "not an address",
        "",
        &format!("{}@example.com", "a".repeat(300)),
    ] {
        test_api(&server, &admin, bad)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_email");
    }
    let other = test_api(&server, &admin, "desk@example.com")
        .await
        .expect(StatusCode::ACCEPTED);
    assert!(other.json()["mail_id"].as_u64().is_some());
    mail.wait_for_mail("desk@example.com", WAIT).await;
}

#[tokio::test]
async fn a_failed_smtp_delivery_shows_with_its_error_and_retries() {
    if !smtp::available() {
        return;
    }
    let mail = SmtpServer::start_down();
    let server = app_mailing_to(mail.port, |_| {}).await;
    let admin = admin_of(&server).await;
    test_api(&server, &admin, "late@example.com")
        .await
        .expect(StatusCode::ACCEPTED);

    let queued = smtp::wait_for_failed_attempts(&server, "late@example.com", 2).await;
    let error = queued.last_error.clone().expect("the error is kept");
    let body = mail_json(&server, &admin).await;
    let listed = &body["queued"][0];
    assert_eq!(listed["to"], "late@example.com", "{body}");
    assert!(listed["attempts"].as_u64() >= Some(2), "{body}");
    assert_eq!(listed["last_error"], error.as_str());
    assert!(listed["next_attempt_at"].as_u64().is_some(), "{body}");
    let shown = page(&server, &admin, "/admin/mail")
        .await
        .expect(StatusCode::OK);
    assert!(shown.text.contains("id=\"queued\""), "{}", shown.text);
    let first_words: String = error
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        shown.contains(&first_words),
        "{error} not in:\n{}",
        shown.text
    );

    // Once the server is up, it goes and moves to the sent list with its failed attempts.
    mail.bring_up();
    mail.wait_for_mail("late@example.com", WAIT).await;
    smtp::wait_for_empty_queue(&server).await;
    let body = mail_json(&server, &admin).await;
    assert_eq!(body["queued"], json!([]), "{body}");
    assert_eq!(body["sent"][0]["to"], "late@example.com", "{body}");
    assert!(body["sent"][0]["attempts"].as_u64() >= Some(2), "{body}");
}
