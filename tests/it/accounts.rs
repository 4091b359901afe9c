//! Accounts: registration, the emailed verification link (through a real SMTP server and the
//! outbox), resends and mail retries. Login, guests and profiles are in `accounts_login` and
//! `accounts_profile`; the helpers here are shared by all three.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{RequestBuilder, StatusCode};
use roommanager::config::{Config, MailTransport, SmtpSecurity};
use serde_json::{json, Value};

use crate::common::smtp::{self, find_verify_link, SmtpServer};
use crate::common::TestServer;

pub const PASSWORD: &str = "correct horse";
const MAIL_WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Helpers shared by the accounts tests
// ---------------------------------------------------------------------------------------------

/// A finished HTTP exchange: status, headers and the body as text.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.text))
    }

    /// The `error.code` of an error answer.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code, status {}: {}", self.status, self.text))
            .to_owned()
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Reply {
        assert_eq!(self.status, status, "{}", self.text);
        self
    }

    /// Asserts an error answer: status, `error.code` and a message for a person.
    #[track_caller]
    pub fn expect_error(self, status: StatusCode, code: &str) -> Reply {
        assert_eq!(self.status, status, "{}", self.text);
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{}", self.text);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "an error message for a person: {}",
            self.text
        );
        self
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_owned())
    }

    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().expect("ASCII cookie").to_owned())
            .collect()
    }

    /// The `Set-Cookie` header that sets `rm_session`.
    #[track_caller]
    pub fn session_cookie(&self) -> String {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with("rm_session="))
            .unwrap_or_else(|| panic!("no rm_session cookie in {:?}", self.set_cookies()))
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.text.to_lowercase().contains(&needle.to_lowercase())
    }
}

pub async fn send(request: RequestBuilder) -> Reply {
    let res = request.send().await.expect("request is answered");
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.expect("body");
    Reply {
        status,
        headers,
        text,
    }
}

fn with_token(request: RequestBuilder, token: Option<&str>) -> RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

pub async fn post_json(
    server: &TestServer,
    path: &str,
    body: &Value,
    token: Option<&str>,
) -> Reply {
    send(with_token(
        server.client.post(server.url(path)).json(body),
        token,
    ))
    .await
}

pub async fn patch_json(server: &TestServer, path: &str, body: &Value, token: &str) -> Reply {
    send(
        server
            .client
            .patch(server.url(path))
            .bearer_auth(token)
            .json(body),
    )
    .await
}

pub async fn get_auth(server: &TestServer, path: &str, token: &str) -> Reply {
    send(server.client.get(server.url(path)).bearer_auth(token)).await
}

pub async fn get(server: &TestServer, path: &str) -> Reply {
    send(server.client.get(server.url(path))).await
}

pub async fn put_bytes(server: &TestServer, path: &str, bytes: Vec<u8>, token: &str) -> Reply {
    send(
        server
            .client
            .put(server.url(path))
            .bearer_auth(token)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(bytes),
    )
    .await
}

/// Posts raw bytes with the given content type (or none), for the bad-input tests.
pub async fn post_raw(
    server: &TestServer,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Reply {
    let mut request = server.client.post(server.url(path)).body(body);
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    send(request).await
}

/// Limits high enough that only the limit a test sets on purpose can trip (all test requests
/// come from 127.0.0.1), and quick mail retries.
pub fn relaxed(c: &mut Config) {
    c.limits.login_free_failures = 1000;
    c.limits.login_per_ip = 1000;
    c.limits.register_per_ip = 1000;
    c.limits.resend_per_ip = 1000;
    c.limits.email_per_address = 1000;
    c.limits.guest_per_ip = 1000;
    c.email.retry_min_secs = 1;
    c.email.retry_max_secs = 2;
}

/// Sends mail through the SMTP server on 127.0.0.1:`port` (plain, no authentication).
pub fn smtp_on(c: &mut Config, port: u16) {
    c.email.transport = MailTransport::Smtp;
    c.email.smtp.host = "127.0.0.1".to_owned();
    c.email.smtp.port = port;
    c.email.smtp.security = SmtpSecurity::None;
    c.email.smtp.timeout_secs = 5;
}

pub fn email_of(username: &str) -> String {
    format!("{username}@example.com")
}

pub async fn register(server: &TestServer, username: &str, email: &str) -> Reply {
    post_json(
        server,
        "/api/v1/register",
        &json!({"username": username, "password": PASSWORD, "email": email}),
        None,
    )
    .await
}

/// Asks for a new verification link for the account `username` with `email`.
pub async fn resend(server: &TestServer, username: &str, email: &str) -> Reply {
    post_json(
        server,
        "/api/v1/register/resend",
        &json!({ "username": username, "email": email }),
        None,
    )
    .await
}

pub async fn login(server: &TestServer, login: &str, password: &str) -> Reply {
    post_json(
        server,
        "/api/v1/login",
        &json!({"login": login, "password": password}),
        None,
    )
    .await
}

/// Logs in with the test password; returns the session token.
pub async fn login_token(server: &TestServer, name: &str) -> String {
    let reply = login(server, name, PASSWORD).await.expect(StatusCode::OK);
    reply.json()["token"]
        .as_str()
        .expect("token in the login answer")
        .to_owned()
}

/// Opens a link from a mail on `server` (its path and query; the host may be an earlier server's).
pub async fn click(server: &TestServer, link: &str) -> Reply {
    let path = link
        .find("/verify?")
        .map(|at| &link[at..])
        .unwrap_or_else(|| panic!("not a verification link: {link}"));
    get(server, path).await
}

/// The 64-hex-character token of a verification link.
pub fn token_of(link: &str) -> String {
    let token = link
        .split("token=")
        .nth(1)
        .unwrap_or_else(|| panic!("no token in {link}"));
    let token: String = token
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    assert!(
        is_token(&token),
        "the link's token is 64 hex characters: {link}"
    );
    token
}

pub fn is_token(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// The page of a first, successful verification.
#[track_caller]
pub fn assert_first_verification(page: &Reply) {
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.contains("your email is verified") && !page.contains("already verified"),
        "the first click says the email is verified: {}",
        page.text
    );
}

#[track_caller]
pub fn assert_already_verified(page: &Reply) {
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.contains("already verified"), "{}", page.text);
}

/// Asserts an HTML page that offers to send a fresh link (a form posting an email address).
#[track_caller]
pub fn assert_offers_resend(page: &Reply) {
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "an HTML page: {:?}",
        page.headers
    );
    assert!(page.contains("<form"), "a resend form: {}", page.text);
    assert!(
        page.contains("email"),
        "the form asks for the email: {}",
        page.text
    );
}

// ----- the outbox (transport "outbox"): DATA_DIR/outbox/*.eml -----------------------------------

/// The decoded text of every outbox message to `email`, oldest first.
pub fn outbox_texts(data: &Path, email: &str) -> Vec<String> {
    let dir = data.join("outbox");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<(std::time::SystemTime, String, String)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .filter_map(|e| {
            let raw = std::fs::read_to_string(e.path()).ok()?;
            let modified = e.metadata().ok()?.modified().ok()?;
            Some((modified, e.file_name().to_string_lossy().into_owned(), raw))
        })
        .filter(|(_, _, raw)| {
            let head = raw.split("\n\n").next().unwrap_or_default();
            let head = head.split("\r\n\r\n").next().unwrap_or_default();
            head.to_lowercase().contains(&email.to_lowercase())
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|(_, _, raw)| {
            let mut parts = Vec::new();
            mime::text_parts(&raw, &mut parts);
            parts.join("\n")
        })
        .collect()
}

/// Waits until the outbox holds `count` messages to `email`; returns their verification links.
pub async fn outbox_links(server: &TestServer, email: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + MAIL_WAIT;
    loop {
        let texts = outbox_texts(server.data.path(), email);
        if texts.len() >= count {
            return texts
                .iter()
                .map(|t| {
                    find_verify_link(t)
                        .unwrap_or_else(|| panic!("no verification link in the mail:\n{t}"))
                })
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "expected {count} outbox mail(s) to {email}, found {}",
            texts.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn outbox_link(server: &TestServer, email: &str) -> String {
    outbox_links(server, email, 1)
        .await
        .pop()
        .expect("one link")
}

/// Registers `username` (email `username@example.com`) on an outbox server and clicks the link.
pub async fn register_and_verify(server: &TestServer, username: &str) -> String {
    let email = email_of(username);
    register(server, username, &email)
        .await
        .expect(StatusCode::CREATED);
    let link = outbox_link(server, &email).await;
    assert_first_verification(&click(server, &link).await);
    email
}

/// A verified account, logged in: its token and user object.
pub async fn signed_in(server: &TestServer, username: &str) -> (String, Value) {
    register_and_verify(server, username).await;
    let reply = login(server, username, PASSWORD)
        .await
        .expect(StatusCode::OK);
    let body = reply.json();
    (
        body["token"].as_str().expect("token").to_owned(),
        body["user"].clone(),
    )
}

/// A verified, logged-in account: its user id and session token.
pub async fn verified_user(server: &TestServer, username: &str) -> (u64, String) {
    let (token, user) = signed_in(server, username).await;
    (user["user_id"].as_u64().expect("user id"), token)
}

/// `POST /api/v1/guest` as the site's own script sends it (with the `X-RM-CSRF` header).
pub async fn new_guest(server: &TestServer) -> Reply {
    send(
        server
            .client
            .post(server.url("/api/v1/guest"))
            .header("x-rm-csrf", "1"),
    )
    .await
}

/// A new guest session's token.
pub async fn guest_token(server: &TestServer) -> String {
    let reply = new_guest(server).await.expect(StatusCode::CREATED);
    reply.json()["token"]
        .as_str()
        .expect("guest token")
        .to_owned()
}

/// Just enough MIME to read a message's text/plain parts (quoted-printable, base64, multipart).
pub mod mime {
    pub fn text_parts(raw: &str, out: &mut Vec<String>) {
        let raw = raw.replace("\r\n", "\n");
        let (head, body) = raw.split_once("\n\n").unwrap_or((raw.as_str(), ""));
        let headers = unfold(head);
        let content_type = header(&headers, "content-type").unwrap_or("text/plain".to_owned());
        let lower = content_type.to_lowercase();
        if lower.starts_with("multipart/") {
            let boundary = param(&content_type, "boundary").expect("multipart boundary");
            let delimiter = format!("--{boundary}");
            for part in body.split(delimiter.as_str()).skip(1) {
                if part.starts_with("--") {
                    break;
                }
                text_parts(part.strip_prefix('\n').unwrap_or(part), out);
            }
        } else if lower.starts_with("text/plain") {
            let encoding = header(&headers, "content-transfer-encoding")
                .unwrap_or_default()
                .to_lowercase();
            let decoded = match encoding.trim() {
                "quoted-printable" => quoted_printable(body),
                "base64" => base64(body),
                _ => body.as_bytes().to_vec(),
            };
            out.push(String::from_utf8_lossy(&decoded).into_owned());
        }
    }

    fn unfold(head: &str) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_lowercase(), value.trim().to_owned()));
            }
        }
        headers
    }

    fn header(headers: &[(String, String)], name: &str) -> Option<String> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn param(value: &str, name: &str) -> Option<String> {
        value.split(';').skip(1).find_map(|p| {
            let (key, val) = p.split_once('=')?;
            (key.trim().eq_ignore_ascii_case(name)).then(|| val.trim().trim_matches('"').to_owned())
        })
    }

    fn quoted_printable(body: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for line in body.split('\n') {
            let (line, soft) = match line.strip_suffix('=') {
                Some(rest) => (rest, true),
                None => (line, false),
            };
            let bytes = line.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'=' && i + 2 < bytes.len() + 1 {
                    let hex = std::str::from_utf8(&bytes[i + 1..(i + 3).min(bytes.len())]).ok();
                    if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                }
                out.push(bytes[i]);
                i += 1;
            }
            if !soft {
                out.push(b'\n');
            }
        }
        out
    }

    fn base64(body: &str) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let mut acc = 0u32;
        let mut bits = 0;
        for c in body.bytes() {
            let Some(v) = ALPHABET.iter().position(|&a| a == c) else {
                continue;
            };
            acc = (acc << 6) | v as u32;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Registration and the emailed link, through a real SMTP server
// ---------------------------------------------------------------------------------------------

async fn smtp_server_and_app(adjust: impl FnOnce(&mut Config)) -> Option<(SmtpServer, TestServer)> {
    if !smtp::available() {
        return None;
    }
    let mail = SmtpServer::start();
    let server = app_mailing_to(mail.port, adjust).await;
    Some((mail, server))
}

/// A relaxed server that sends its mail through the SMTP server on 127.0.0.1:`port`, changed
/// by `adjust`.
pub async fn app_mailing_to(port: u16, adjust: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(|c| {
        relaxed(c);
        smtp_on(c, port);
        adjust(c);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_emailed_link_verifies_once_then_says_already_verified() {
    let Some((mail, server)) = smtp_server_and_app(|_| {}).await else {
        return;
    };
    let reply = register(&server, "alice", "alice@example.com")
        .await
        .expect(StatusCode::CREATED);
    let body = reply.json();
    assert!(body["user_id"].as_u64().is_some(), "{body}");
    assert_eq!(body["username"], "alice");
    assert_eq!(body["email"], "alice@example.com");
    assert_eq!(body["verified"], false);

    let message = mail.wait_for_mail("alice@example.com", MAIL_WAIT).await;
    assert!(message.subject.contains("Verify"), "{message:?}");
    assert!(
        message.from.contains("roommanager@localhost"),
        "{message:?}"
    );
    let link = message.verify_link();
    assert!(
        link.starts_with(&format!("{}/verify?token=", server.base)),
        "the link starts with public_url: {link}"
    );
    token_of(&link);
    assert!(
        message.text.lines().any(|line| line.trim() == link),
        "the link is on its own line: {}",
        message.text
    );

    assert_first_verification(&click(&server, &link).await);
    assert_already_verified(&click(&server, &link).await);
    assert_already_verified(&click(&server, &link).await);

    let user = login(&server, "alice", PASSWORD)
        .await
        .expect(StatusCode::OK)
        .json()["user"]
        .clone();
    assert_eq!(user["verified"], true, "{user}");
    assert_eq!(
        mail.mails_to("alice@example.com").len(),
        1,
        "clicking sends no more mail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_clicks_verify_exactly_once_and_create_one_room() {
    let Some((mail, server)) = smtp_server_and_app(|_| {}).await else {
        return;
    };
    register(&server, "carol", "carol@example.com")
        .await
        .expect(StatusCode::CREATED);
    let link = mail
        .wait_for_mail("carol@example.com", MAIL_WAIT)
        .await
        .verify_link();
    let path = link[link.find("/verify?").expect("verify path")..].to_owned();

    let clicks: Vec<_> = (0..8)
        .map(|_| {
            let client = server.client.clone();
            let url = server.url(&path);
            tokio::spawn(async move { send(client.get(url)).await })
        })
        .collect();
    let mut first = 0;
    let mut already = 0;
    for click in clicks {
        let page = click.await.expect("click task");
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        if page.contains("already verified") {
            already += 1;
        } else {
            assert_first_verification(&page);
            first += 1;
        }
    }
    assert_eq!((first, already), (1, 7), "exactly one click verifies");

    let token = login_token(&server, "carol").await;
    let me = get_auth(&server, "/api/v1/me", &token)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(me["verified"], true);
    let room = get_auth(&server, "/api/v1/me/room", &token)
        .await
        .expect(StatusCode::OK)
        .json();
    assert!(room["room_id"].as_u64().is_some(), "{room}");
    assert_eq!(room["room_id"], me["room_id"], "the user's one room");
    assert_eq!(room["owner_id"], me["user_id"]);
}

#[tokio::test]
async fn smtp_down_then_up_the_registration_is_kept_and_the_mail_arrives_after_a_retry() {
    if !smtp::available() {
        return;
    }
    let mail = SmtpServer::start_down(); // holds its port, refuses connections
    let server = app_mailing_to(mail.port, |_| {}).await;
    register(&server, "dave", "dave@example.com")
        .await
        .expect(StatusCode::CREATED);
    // The account exists (not lost): the right password is answered "not verified yet".
    login(&server, "dave", PASSWORD)
        .await
        .expect_error(StatusCode::FORBIDDEN, "email_not_verified");
    // An attempt fails against the refusing port and is recorded; the mail stays queued.
    let queued = smtp::wait_for_failed_attempts(&server, "dave@example.com", 1).await;
    let error = queued.last_error.clone().unwrap_or_default();
    assert!(
        error.to_lowercase().contains("connection refused"),
        "the recorded error says why: {error}"
    );
    assert!(mail.events().is_empty(), "{:#?}", mail.events());

    mail.bring_up();
    let link = mail
        .wait_for_mail("dave@example.com", MAIL_WAIT)
        .await
        .verify_link();
    smtp::wait_for_empty_queue(&server).await;
    assert_eq!(
        mail.mails_to("dave@example.com").len(),
        1,
        "delivered once: {:#?}",
        mail.events()
    );
    assert_first_verification(&click(&server, &link).await);
    login(&server, "dave", PASSWORD)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_mail_server_does_not_hold_up_registration() {
    // A port that accepts connections (the kernel's backlog) but never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("local addr").port();
    let server = TestServer::start_with(|c| {
        relaxed(c);
        smtp_on(c, port);
        c.email.smtp.timeout_secs = 60;
    })
    .await;
    let started = Instant::now();
    let reply = send(
        server
            .client
            .post(server.url("/api/v1/register"))
            .timeout(Duration::from_secs(20))
            .json(&json!({"username": "otto", "password": PASSWORD, "email": "otto@example.com"})),
    )
    .await
    .expect(StatusCode::CREATED);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the answer does not wait for the mail server"
    );
    assert_eq!(reply.json()["verified"], false);
    login(&server, "otto", PASSWORD)
        .await
        .expect_error(StatusCode::FORBIDDEN, "email_not_verified");
    drop(silent);
}

#[tokio::test]
async fn a_mail_queued_while_smtp_is_down_is_sent_after_a_restart() {
    if !smtp::available() {
        return;
    }
    let mail = SmtpServer::start_down();
    let port = mail.port;
    let adjust = move |c: &mut Config| {
        relaxed(c);
        smtp_on(c, port);
    };
    let server = TestServer::start_with(adjust).await;
    register(&server, "erin", "erin@example.com")
        .await
        .expect(StatusCode::CREATED);
    smtp::wait_for_failed_attempts(&server, "erin@example.com", 1).await;
    let data = server.stop_keep_data().await;

    let server = TestServer::start_in(data, adjust).await;
    let queue = smtp::mail_queue(&server).await;
    assert!(
        queue.iter().any(|m| m.to == "erin@example.com"),
        "still queued after the restart: {queue:#?}"
    );
    mail.bring_up();
    let message = mail.wait_for_mail("erin@example.com", MAIL_WAIT).await;
    smtp::wait_for_empty_queue(&server).await;
    assert_eq!(
        mail.mails().len(),
        1,
        "delivered once: {:#?}",
        mail.events()
    );
    assert_first_verification(&click(&server, &message.verify_link()).await);
    login(&server, "erin", PASSWORD)
        .await
        .expect(StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Registration rules (outbox transport: no mail server needed)
// ---------------------------------------------------------------------------------------------

async fn relaxed_server() -> TestServer {
    TestServer::start_with(relaxed).await
}

#[tokio::test]
async fn duplicate_usernames_and_emails_are_refused_in_any_letter_case() {
    let server = relaxed_server().await;
    register_and_verify(&server, "alice").await;
    for (username, email, code) in [
        ("alice", "other1@example.com", "username_taken"),
        ("ALICE", "other2@example.com", "username_taken"),
        ("Alice", "other3@example.com", "username_taken"),
        ("bob", "alice@example.com", "email_taken"),
        ("bob2", "ALICE@EXAMPLE.COM", "email_taken"),
        ("bob3", "Alice@Example.com", "email_taken"),
    ] {
        let reply = register(&server, username, email).await;
        assert_eq!(
            reply.status,
            StatusCode::CONFLICT,
            "{username} {email}: {}",
            reply.text
        );
        assert_eq!(reply.code(), code, "{username} {email}");
    }

    // An account still waiting for verification holds its names the same way.
    register(&server, "Émile", "emile@example.com")
        .await
        .expect(StatusCode::CREATED);
    register(&server, "émile", "emile2@example.com")
        .await
        .expect_error(StatusCode::CONFLICT, "username_pending");
    register(&server, "emil", "EMILE@example.com")
        .await
        .expect_error(StatusCode::CONFLICT, "email_pending");

    // The refused attempts created nothing: the names are still free for their owner only.
    register(&server, "bob", "bob@example.com")
        .await
        .expect(StatusCode::CREATED);
}

#[tokio::test]
async fn usernames_follow_the_documented_rule() {
    let server = relaxed_server().await;
    let accepted = [
        "abc",
        "a_b-c",
        "小明_01",
        "Zoë-42",
        &"a".repeat(32),
        &"明".repeat(32),
    ];
    for (i, username) in accepted.iter().enumerate() {
        let reply = register(&server, username, &format!("ok{i}@example.com")).await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "{username:?}: {}",
            reply.text
        );
        assert_eq!(reply.json()["username"], **username);
    }
    let refused = [
        "ab",
        "明明",
        &"a".repeat(33),
        &"明".repeat(33),
        "",
        "has space",
        "dot.ted",
        "at@sign",
        "slash/name",
        "ali😀ce",
        "😀😀😀",
        "nul\0byte",
        "tab\tname",
        "zero\u{200d}width",
        "rtl\u{202e}over",
        "<script>",
    ];
    for username in refused {
        let reply = register(&server, username, "refused@example.com").await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{username:?}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "invalid_username", "{username:?}");
    }
}

#[tokio::test]
async fn passwords_and_emails_follow_the_documented_rules() {
    let server = relaxed_server().await;
    let register_with = |username: &'static str, password: String, email: String| {
        let server = &server;
        async move {
            post_json(
                server,
                "/api/v1/register",
                &json!({"username": username, "password": password, "email": email}),
                None,
            )
            .await
        }
    };

    for password in [
        String::new(),
        "1234567".to_owned(),
        "パスワード12".to_owned(), // 7 characters, 17 bytes
        "x".repeat(257),
    ] {
        let reply = register_with("pw_user", password.clone(), "pw@example.com".into()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{password:?}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "invalid_password", "{password:?}");
    }
    register_with("pw_eight", "12345678".into(), "pw8@example.com".into())
        .await
        .expect(StatusCode::CREATED);
    register_with("pw_long", "y".repeat(256), "pw256@example.com".into())
        .await
        .expect(StatusCode::CREATED);

    // Lengths at the limit, with a local part and labels within the usual limits (64 and 63).
    let long_email = format!(
        "{}@{}.{}.{}.com",
        "e".repeat(64),
        "d".repeat(62),
        "d".repeat(61),
        "d".repeat(61)
    );
    assert_eq!(long_email.len(), 255);
    for email in [
        "",
        "no-at-sign",
        "@example.com",
        "two@@example.com",
        "a@b@example.com",
        "nodot@localhost",
        "trailing@",
        long_email.as_str(),
    ] {
        let reply = register_with("mail_user", PASSWORD.into(), email.to_owned()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{email:?}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "invalid_email", "{email:?}");
    }
    let longest_email = format!(
        "{}@{}.{}.{}.com",
        "e".repeat(64),
        "d".repeat(61),
        "d".repeat(61),
        "d".repeat(61)
    );
    assert_eq!(longest_email.len(), 254);
    register_with("mail_254", PASSWORD.into(), longest_email)
        .await
        .expect(StatusCode::CREATED);
}

#[tokio::test]
async fn malformed_register_requests_get_clear_errors_and_create_nothing() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.server.max_body_bytes = 4096;
    })
    .await;
    let path = "/api/v1/register";
    let json_type = Some("application/json");

    post_raw(&server, path, json_type, "{not json")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_json");
    post_raw(&server, path, json_type, "")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_json");
    post_raw(&server, path, json_type, "[1, 2, 3]")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_json");
    post_raw(&server, path, json_type, vec![0xff, 0xfe, b'{', b'}'])
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_json");
    for body in [
        json!({"username": "frank", "password": PASSWORD}),
        json!({"username": "frank", "email": "frank@example.com"}),
        json!({"password": PASSWORD, "email": "frank@example.com"}),
        json!({"username": 42, "password": PASSWORD, "email": "frank@example.com"}),
        json!({"username": "frank", "password": ["x"], "email": "frank@example.com"}),
        json!({"username": "frank", "password": PASSWORD, "email": null}),
        json!({"username": "frank", "password": PASSWORD, "email": {"a": 1}}),
    ] {
        let reply = post_json(&server, path, &body, None).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "bad_json", "{body}");
    }

    let valid = json!({"username": "frank", "password": PASSWORD, "email": "frank@example.com"})
        .to_string();
    post_raw(&server, path, None, valid.clone())
        .await
        .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    post_raw(&server, path, Some("text/plain"), valid.clone())
        .await
        .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

    let huge =
        json!({"username": "frank", "password": "p".repeat(8000), "email": "frank@example.com"})
            .to_string();
    post_raw(&server, path, json_type, huge)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // None of that created the account: the well-formed request now succeeds.
    post_raw(&server, path, json_type, valid)
        .await
        .expect(StatusCode::CREATED);
}

// ---------------------------------------------------------------------------------------------
// Links: expired, unknown, replaced; resends
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_expired_link_says_so_and_offers_a_resend() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.accounts.verification_ttl_secs = 1;
    })
    .await;
    register(&server, "gina", "gina@example.com")
        .await
        .expect(StatusCode::CREATED);
    let link = outbox_link(&server, "gina@example.com").await;
    tokio::time::sleep(Duration::from_millis(2100)).await; // the link's lifetime must pass

    let page = click(&server, &link).await;
    assert_eq!(page.status, StatusCode::GONE, "{}", page.text);
    assert!(page.contains("expired"), "{}", page.text);
    assert_offers_resend(&page);
    login(&server, "gina", PASSWORD)
        .await
        .expect_error(StatusCode::FORBIDDEN, "email_not_verified");

    // The offered resend sends a fresh link (that it verifies is checked with a longer lifetime
    // in `a_resend_replaces_the_old_link`; one second is too short to click it reliably).
    resend(&server, "gina", "gina@example.com")
        .await
        .expect(StatusCode::ACCEPTED);
    let fresh = outbox_links(&server, "gina@example.com", 2).await.remove(1);
    assert_ne!(token_of(&fresh), token_of(&link));
}

#[tokio::test]
async fn unknown_missing_and_malformed_tokens_get_the_unknown_link_page() {
    let server = relaxed_server().await;
    for path in [
        format!("/verify?token={}", "0".repeat(64)),
        format!("/verify?token={}", "ab".repeat(32)),
        "/verify".to_owned(),
        "/verify?token=".to_owned(),
        "/verify?token=not-a-token".to_owned(),
        "/verify?token=%00%2e%2e%2f".to_owned(),
        format!("/verify?token={}", "f".repeat(5000)),
    ] {
        let page = get(&server, &path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}: {}", page.text);
        assert!(page.contains("unknown link"), "{path}: {}", page.text);
        assert_offers_resend(&page);
    }
}

#[tokio::test]
async fn a_resend_replaces_the_old_link() {
    let server = relaxed_server().await;
    register(&server, "hank", "hank@example.com")
        .await
        .expect(StatusCode::CREATED);
    let old = outbox_link(&server, "hank@example.com").await;
    let reply = resend(&server, "hank", "hank@example.com")
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(reply.json(), json!({"status": "sent"}));
    let links = outbox_links(&server, "hank@example.com", 2).await;
    let new = links[1].clone();
    assert_ne!(token_of(&old), token_of(&new), "a fresh token");

    let page = click(&server, &old).await;
    assert_eq!(page.status, StatusCode::GONE, "{}", page.text);
    assert!(page.contains("replaced"), "{}", page.text);
    assert_offers_resend(&page);
    login(&server, "hank", PASSWORD)
        .await
        .expect_error(StatusCode::FORBIDDEN, "email_not_verified");

    assert_first_verification(&click(&server, &new).await);
    // Once the account is verified, its old link only says so.
    assert_already_verified(&click(&server, &old).await);
    login(&server, "hank", PASSWORD)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn resend_refuses_verified_unknown_and_invalid_accounts() {
    let server = relaxed_server().await;
    let email = register_and_verify(&server, "ivan").await;
    resend(&server, "IVAN", &email)
        .await
        .expect_error(StatusCode::CONFLICT, "already_verified");
    resend(&server, "nobody", "nobody@example.com")
        .await
        .expect_error(StatusCode::NOT_FOUND, "unknown_account");
    register(&server, "jana", "jana@example.com")
        .await
        .expect(StatusCode::CREATED);
    // Both must name the same account: the address alone gets no link.
    resend(&server, "ivan", "jana@example.com")
        .await
        .expect_error(StatusCode::NOT_FOUND, "unknown_account");
    resend(&server, "jana", "ivan@example.com")
        .await
        .expect_error(StatusCode::NOT_FOUND, "unknown_account");
    resend(&server, "jana", "not-an-email")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_email");
    resend(&server, "no such user!", "jana@example.com")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_username");
    for body in [
        json!({"username": "jana", "email": 7}),
        json!({"email": "jana@example.com"}),
    ] {
        post_json(&server, "/api/v1/register/resend", &body, None)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "bad_json");
    }
    assert_eq!(
        outbox_texts(server.data.path(), &email).len(),
        1,
        "no mail for a refused resend"
    );
    assert_eq!(
        outbox_texts(server.data.path(), "jana@example.com").len(),
        1,
        "only the registration's mail"
    );
}

#[tokio::test]
async fn the_outbox_mail_has_a_verify_subject_and_the_link_on_its_own_line() {
    let server = relaxed_server().await;
    register(&server, "jade", "jade@example.com")
        .await
        .expect(StatusCode::CREATED);
    let link = outbox_link(&server, "jade@example.com").await;
    assert!(
        link.starts_with(&format!("{}/verify?token=", server.base)),
        "{link}"
    );
    token_of(&link);
    let raw: Vec<String> = std::fs::read_dir(server.data.path().join("outbox"))
        .expect("outbox dir")
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).expect("read .eml"))
        .collect();
    assert!(
        raw.iter().any(|m| m
            .lines()
            .any(|l| l.starts_with("Subject:") && l.contains("Verify"))),
        "{raw:?}"
    );
    let text = outbox_texts(server.data.path(), "jade@example.com").remove(0);
    assert!(text.lines().any(|l| l.trim() == link), "{text}");
}

#[tokio::test]
async fn accounts_survive_a_restart() {
    let server = relaxed_server().await;
    register_and_verify(&server, "kim").await;
    let before = login(&server, "kim", PASSWORD)
        .await
        .expect(StatusCode::OK)
        .json();
    register(&server, "lee", "lee@example.com")
        .await
        .expect(StatusCode::CREATED);
    let lee_link = outbox_link(&server, "lee@example.com").await;
    let data = server.stop_keep_data().await;

    let server = TestServer::start_in(data, relaxed).await;
    let after = login(&server, "kim", PASSWORD)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(after["user"]["user_id"], before["user"]["user_id"]);
    assert_eq!(after["user"]["room_id"], before["user"]["room_id"]);
    // A session from before the restart is still valid.
    let token = before["token"].as_str().expect("token");
    get_auth(&server, "/api/v1/me", token)
        .await
        .expect(StatusCode::OK);
    // An unverified account and its link survive too.
    login(&server, "lee", PASSWORD)
        .await
        .expect_error(StatusCode::FORBIDDEN, "email_not_verified");
    assert_first_verification(&click(&server, &lee_link).await);
    // And names stay taken.
    register(&server, "KIM", "kim2@example.com")
        .await
        .expect_error(StatusCode::CONFLICT, "username_taken");
}
