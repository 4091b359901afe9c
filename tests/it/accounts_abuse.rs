//! Accounts under abuse: giant login names, strangers guessing passwords, floods of guests and
//! resends, squatting on someone else's email, and tables that must not grow without bound.
//! Each test shows the bad input refused and a well-behaved client still served. Two clients
//! are told apart by their source address: 127.0.0.1 and 127.0.0.2, both loopback on Linux.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use roommanager::model::{LoginKind, TokenHash};
use roommanager::store::{MailDraft, NewAccount, NewToken, Store, VerifyOutcome};
use serde_json::{json, Value};

use crate::accounts::{
    assert_already_verified, assert_first_verification, click, get, get_auth, login, outbox_links,
    outbox_texts, register, register_and_verify, relaxed, resend, send, Reply, PASSWORD,
};
use crate::accounts_login::assert_rate_limited;
use crate::common::{wait_for, Process, TestServer};

const STRANGER: [u8; 4] = [127, 0, 0, 2];

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A client whose connections come from `ip`.
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(ip))
        .build()
        .expect("a client bound to a loopback address")
}

async fn post_from(
    client: &reqwest::Client,
    server: &TestServer,
    path: &str,
    body: &Value,
) -> Reply {
    send(client.post(server.url(path)).json(body)).await
}

async fn login_from(
    client: &reqwest::Client,
    server: &TestServer,
    name: &str,
    password: &str,
) -> Reply {
    let body = json!({"login": name, "password": password});
    post_from(client, server, "/api/v1/login", &body).await
}

// ----- giant login names -----------------------------------------------------------------------

#[tokio::test]
async fn login_names_longer_than_any_account_are_refused_before_they_cost_anything() {
    let server = TestServer::start_with(relaxed).await;
    register_and_verify(&server, "olga").await;
    let keys_before = server.app().accounts.limiter_keys();
    let longest_email = format!("{}@{}.example", "a".repeat(64), "b".repeat(181));
    let giant = "x".repeat(1_000_000);
    for body in [
        json!({"login": giant, "password": PASSWORD}),
        json!({"login": format!("a@{giant}"), "password": PASSWORD}),
        json!({"username": giant, "password": PASSWORD}),
        json!({"login": "x".repeat(33), "password": PASSWORD}),
        json!({"login": format!("a{longest_email}"), "password": PASSWORD}),
    ] {
        let reply = crate::accounts::post_json(&server, "/api/v1/login", &body, None).await;
        reply.expect_error(StatusCode::BAD_REQUEST, "invalid_login");
    }
    let reply = login(&server, &"名".repeat(33), PASSWORD).await;
    assert!(reply.contains("at most 32 characters"), "{}", reply.text);
    assert_eq!(
        server.app().accounts.limiter_keys(),
        keys_before,
        "refused names are not remembered by any limiter"
    );
    // Names as long as registration allows still get the ordinary answer.
    login(&server, &longest_email, PASSWORD)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    login(&server, &"y".repeat(32), PASSWORD)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    login(&server, "olga", PASSWORD)
        .await
        .expect(StatusCode::OK);
}

/// A memory figure of process `pid` from `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("a {field} line in KiB"))
}

fn rss_kib(pid: u32) -> u64 {
    memory_kib(pid, "VmRSS")
}

/// 155 one-megabyte login names used to cost the server ~490 MB of resident memory (each was
/// kept as a limiter key). The real binary in a child process, so its memory is its own.
#[tokio::test]
async fn a_flood_of_megabyte_login_names_leaves_the_servers_memory_alone() {
    let data = tempfile::tempdir().expect("temp dir");
    let process = Process::serve(data.path(), "");
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/login", process.base);
    let warm_up = client
        .post(&url)
        .json(&json!({"login": "nobody", "password": PASSWORD}))
        .send()
        .await
        .expect("answered");
    assert_eq!(warm_up.status(), StatusCode::UNAUTHORIZED);
    let before = rss_kib(process.pid());
    let giant = "x".repeat(1_000_000);
    for i in 0..155 {
        // A different name each time, as each would have been a new key.
        let body = json!({"login": format!("{i}{giant}"), "password": PASSWORD});
        let reply = client
            .post(&url)
            .json(&body)
            .send()
            .await
            .expect("answered");
        assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
        let answer: Value = reply.json().await.expect("a JSON error");
        assert_eq!(answer["error"]["code"], "invalid_login");
    }
    let after = rss_kib(process.pid());
    let grown_mib = after.saturating_sub(before) / 1024;
    println!("RSS {before} KiB before, {after} KiB after 155 MB of login names (+{grown_mib} MiB)");
    assert!(grown_mib < 32, "the server grew by {grown_mib} MiB");
    let healthy = client
        .get(format!("{}/healthz", process.base))
        .send()
        .await
        .expect("answered");
    assert_eq!(healthy.status(), StatusCode::OK);
}

/// Each password check works in 19 MiB. 30 logins at once (what one address may send) used to
/// leave the server ~550 MiB larger for good; now at most one working memory per core exists.
#[tokio::test]
async fn a_burst_of_logins_holds_one_password_hashing_memory_per_core() {
    let data = tempfile::tempdir().expect("temp dir");
    let process = Process::serve(
        data.path(),
        "[server]\nmax_connections_per_ip = 0\n[limits]\nlogin_per_ip = 1000\n",
    );
    let url = format!("{}/api/v1/login", process.base);
    let attempt = |name: String| {
        let request = reqwest::Client::new()
            .post(&url)
            .json(&json!({"login": name, "password": PASSWORD}));
        tokio::spawn(async move {
            let reply = request.send().await.expect("answered");
            assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
        })
    };
    attempt("warm-up".to_owned())
        .await
        .expect("the warm-up login");
    let before = rss_kib(process.pid());
    let burst: Vec<_> = (0..100).map(|i| attempt(format!("nobody{i}"))).collect();
    for login in burst {
        login.await.expect("a login of the burst");
    }
    let peak = memory_kib(process.pid(), "VmHWM");
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as u64;
    let grown_mib = peak.saturating_sub(before) / 1024;
    println!("100 logins at once: RSS {before} KiB before, peak {peak} KiB (+{grown_mib} MiB)");
    // One more 19 MiB working memory per hashing thread, and room for the connections.
    assert!(
        grown_mib <= cores * 20 + 32,
        "the server grew by {grown_mib} MiB on {cores} cores"
    );
}

// ----- login lockout ---------------------------------------------------------------------------

#[tokio::test]
async fn a_strangers_wrong_passwords_do_not_lock_the_owner_out() {
    // The default limits: five free failures, then waits from 5 s doubling to 15 minutes.
    let server = TestServer::start().await;
    register_and_verify(&server, "olga").await;
    let stranger = client_from(STRANGER);
    let mut answers = Vec::new();
    for _ in 0..10 {
        answers.push(login_from(&stranger, &server, "olga", "guess").await);
    }
    for reply in answers.drain(..6) {
        reply.expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    for reply in &answers {
        assert_rate_limited(reply, 5);
    }
    // The stranger's address waits even with the right password, under any name of the account.
    assert_rate_limited(&login_from(&stranger, &server, "olga", PASSWORD).await, 5);
    assert_rate_limited(
        &login_from(&stranger, &server, "OLGA@example.com", PASSWORD).await,
        5,
    );

    // The owner, from another address, logs in at once, by username or email.
    login(&server, "olga", PASSWORD)
        .await
        .expect(StatusCode::OK);
    login(&server, "olga@example.com", PASSWORD)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn one_address_trying_many_accounts_is_stopped_while_others_log_in() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.limits.login_per_ip = 5;
        c.limits.login_window_secs = 300;
    })
    .await;
    register_and_verify(&server, "pia").await;
    let stranger = client_from(STRANGER);
    for i in 0..5 {
        login_from(&stranger, &server, &format!("user{i}"), PASSWORD)
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    assert_rate_limited(&login_from(&stranger, &server, "pia", PASSWORD).await, 300);
    login(&server, "pia", PASSWORD).await.expect(StatusCode::OK);
}

#[tokio::test]
async fn the_limiters_memory_is_bounded_whatever_names_arrive() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.limits.login_free_failures = 0;
        c.limits.max_tracked_keys = 16;
    })
    .await;
    register_and_verify(&server, "quinn").await;
    // Every failure under a new name is a new key of the failed-logins limiter.
    for i in 0..60 {
        login(&server, &format!("nobody{i}"), PASSWORD)
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    let keys = server.app().accounts.limiter_keys();
    // 16 failed-login keys at most, plus one client for logins and the registration's two.
    assert!(keys <= 16 + 3, "{keys} keys tracked");
    login(&server, "quinn", PASSWORD)
        .await
        .expect(StatusCode::OK);
}

// ----- guests and resends ----------------------------------------------------------------------

#[tokio::test]
async fn a_guest_flood_from_one_address_is_refused_while_another_gets_guests() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.limits.guest_per_ip = 5;
        c.limits.guest_window_secs = 600;
    })
    .await;
    let since = now();
    let stranger = client_from(STRANGER);
    for _ in 0..5 {
        post_from(&stranger, &server, "/api/v1/guest", &json!({}))
            .await
            .expect(StatusCode::CREATED);
    }
    for _ in 0..20 {
        let reply = post_from(&stranger, &server, "/api/v1/guest", &json!({})).await;
        assert_rate_limited(&reply, 600);
    }
    let guest = send(
        server
            .client
            .post(server.url("/api/v1/guest"))
            .header("x-rm-csrf", "1"),
    )
    .await
    .expect(StatusCode::CREATED);
    let token = guest.json()["token"].as_str().expect("token").to_owned();
    get_auth(&server, "/api/v1/me", &token)
        .await
        .expect(StatusCode::OK);
    let events = server.app().store.logins_since(since).expect("read logins");
    let guests = events.iter().filter(|e| e.kind == LoginKind::Guest).count();
    assert_eq!(guests, 6, "refused guests are neither created nor recorded");
}

#[tokio::test]
async fn resend_requests_are_limited_per_address() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.limits.resend_per_ip = 2;
        c.limits.resend_window_secs = 1200;
    })
    .await;
    for name in ["rosa", "sven", "tara"] {
        register(&server, name, &format!("{name}@example.com"))
            .await
            .expect(StatusCode::CREATED);
    }
    let stranger = client_from(STRANGER);
    let body = |name: &str| json!({"username": name, "email": format!("{name}@example.com")});
    for name in ["rosa", "sven"] {
        post_from(&stranger, &server, "/api/v1/register/resend", &body(name))
            .await
            .expect(StatusCode::ACCEPTED);
    }
    let refused = post_from(&stranger, &server, "/api/v1/register/resend", &body("tara")).await;
    assert_rate_limited(&refused, 1200);
    resend(&server, "tara", "tara@example.com")
        .await
        .expect(StatusCode::ACCEPTED);
    // tara got her registration mail and the one resend from the well-behaved address.
    assert_eq!(outbox_links(&server, "tara@example.com", 2).await.len(), 2);
}

// ----- unverified accounts ---------------------------------------------------------------------

#[tokio::test]
async fn expired_unverified_accounts_are_purged_and_free_their_name_and_email() {
    // A verified account and its room first, under the default link lifetime.
    let server = TestServer::start_with(relaxed).await;
    register_and_verify(&server, "uma").await;
    let data = server.stop_keep_data().await;

    let server = TestServer::start_in(data, |c| {
        relaxed(c);
        c.accounts.verification_ttl_secs = 1;
        c.accounts.unverified_grace_secs = 1;
    })
    .await;
    register(&server, "sam", "sam@example.com")
        .await
        .expect(StatusCode::CREATED);
    let link = outbox_links(&server, "sam@example.com", 1).await.remove(0);
    // Gone once its link has expired and the grace period passed: the right password no
    // longer finds an account waiting for verification.
    wait_for(|| async {
        let reply = login(&server, "sam", PASSWORD).await;
        match reply.code().as_str() {
            "email_not_verified" => None,
            "invalid_credentials" => Some(()),
            other => panic!("unexpected answer {other}: {}", reply.text),
        }
    })
    .await;
    let page = click(&server, &link).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.text);
    assert!(page.contains("unknown link"), "{}", page.text);

    // The name and the address are free again, for anyone.
    register(&server, "sam", "sam2@example.com")
        .await
        .expect(StatusCode::CREATED);
    register(&server, "sasha", "sam@example.com")
        .await
        .expect(StatusCode::CREATED);
    // The verified account was left alone.
    login(&server, "uma", PASSWORD).await.expect(StatusCode::OK);
}

/// An attacker registers the victim's email first. The victim is told the address is held and
/// for how long, cannot get a link to the attacker's account by asking for one, and once the
/// attacker's hold is over registers and verifies her own account with her email; the
/// attacker's links then verify nothing.
#[tokio::test]
async fn the_squatting_sequence_ends_with_the_victim_owning_the_verified_email() {
    let victim_email = "vera@example.com";
    let server = TestServer::start_with(relaxed).await;

    // 1. The attacker registers "mallory" with the victim's address.
    register(&server, "mallory", victim_email)
        .await
        .expect(StatusCode::CREATED);
    outbox_links(&server, victim_email, 1).await;
    let mail = outbox_texts(server.data.path(), victim_email).remove(0);
    assert!(
        mail.contains("\"mallory\"") && mail.contains("only if you registered \"mallory\""),
        "the mail names the account it verifies:\n{mail}"
    );

    // 2. The victim registers while the attacker's hold lasts: a clear answer, no account.
    let reply = register(&server, "vera", victim_email)
        .await
        .expect_error(StatusCode::CONFLICT, "email_pending");
    assert!(
        reply.contains("not verified yet") && reply.contains("hours"),
        "{}",
        reply.text
    );
    // The attacker's username is held as well.
    register(&server, "mallory", "other@example.com")
        .await
        .expect_error(StatusCode::CONFLICT, "username_pending");

    // 3. The victim asks for a new link for her own account: no link for someone else's.
    resend(&server, "vera", victim_email)
        .await
        .expect_error(StatusCode::NOT_FOUND, "unknown_account");
    // The attacker may ask for one; it reaches the victim, naming "mallory".
    resend(&server, "mallory", victim_email)
        .await
        .expect(StatusCode::ACCEPTED);
    let mallory_links = outbox_links(&server, victim_email, 2).await;
    let resent = outbox_texts(server.data.path(), victim_email).remove(1);
    assert!(resent.contains("\"mallory\""), "{resent}");

    // 4. The attacker's hold is over (a restart with a one-second link lifetime stands in for a
    //    day passing): the victim's registration replaces the unverified squatter.
    let data = server.stop_keep_data().await;
    let server = TestServer::start_in(data, |c| {
        relaxed(c);
        c.accounts.verification_ttl_secs = 1;
    })
    .await;
    let created = wait_for(|| async {
        let reply = register(&server, "vera", victim_email).await;
        match reply.status {
            StatusCode::CREATED => Some(reply.json()),
            // Within the second the hold ends in.
            StatusCode::CONFLICT if reply.code() == "email_pending" => None,
            _ => panic!("unexpected answer: {}", reply.text),
        }
    })
    .await;
    // The attacker's links now lead nowhere.
    for link in &mallory_links {
        let page = click(&server, link).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.text);
    }
    login(&server, "mallory", PASSWORD)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");

    // 5. Back to the usual lifetime, the victim asks for a link for her account and clicks it:
    //    her account, with her address, verified.
    let data = server.stop_keep_data().await;
    let server = TestServer::start_in(data, relaxed).await;
    resend(&server, "vera", victim_email)
        .await
        .expect(StatusCode::ACCEPTED);
    let vera_link = outbox_links(&server, victim_email, 4).await.remove(3);
    let vera_mail = outbox_texts(server.data.path(), victim_email).remove(3);
    assert!(vera_mail.contains("\"vera\""), "{vera_mail}");
    assert_first_verification(&click(&server, &vera_link).await);
    let me = login(&server, victim_email, PASSWORD)
        .await
        .expect(StatusCode::OK)
        .json()["user"]
        .clone();
    assert_eq!(me["user_id"], created["user_id"]);
    assert_eq!(me["username"], "vera");
    assert_eq!(me["email"], victim_email);
    assert_eq!(me["verified"], true);
    for link in &mallory_links {
        assert_eq!(click(&server, link).await.status, StatusCode::NOT_FOUND);
    }
    // The address is hers for good; the squatter's username is free for anyone.
    register(&server, "mallory", victim_email)
        .await
        .expect_error(StatusCode::CONFLICT, "email_taken");
    register(&server, "mallory", "mallory@example.com")
        .await
        .expect(StatusCode::CREATED);
}

// ----- append-only tables ----------------------------------------------------------------------

#[tokio::test]
async fn login_events_are_kept_for_the_retention_only() {
    let data = tempfile::tempdir().expect("temp dir");
    let day = 24 * 3600;
    let old = now() - 10 * day;
    let recent = now() - 3 * day;
    {
        let store = Store::open(data.path()).expect("a fresh store");
        for (at, tag) in [(old, "a"), (recent, "b")] {
            let hash = TokenHash(tag.repeat(64));
            store
                .create_guest(
                    format!("Guest-{tag}"),
                    &hash,
                    at,
                    at + day,
                    "127.0.0.1".to_owned(),
                )
                .expect("a guest recorded then");
        }
        store.close().expect("closed");
    }
    let server = TestServer::start_in(data, |c| {
        relaxed(c);
        c.accounts.login_events_days = 5;
    })
    .await;
    let events = wait_for(|| async {
        let events = server.app().store.logins_since(0).expect("read logins");
        events.iter().all(|e| e.at != old).then_some(events)
    })
    .await;
    assert_eq!(
        events.iter().map(|e| e.at).collect::<Vec<_>>(),
        [recent],
        "the event within the retention is kept"
    );
    // New visits are still recorded.
    let since = now();
    send(
        server
            .client
            .post(server.url("/api/v1/guest"))
            .header("x-rm-csrf", "1"),
    )
    .await
    .expect(StatusCode::CREATED);
    let events = server.app().store.logins_since(since).expect("read logins");
    assert_eq!(events.len(), 1);
}

/// The token of a link, as the server stores it: the SHA-256 of its text, in hex.
fn stored_hash(token: &str) -> TokenHash {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(token.as_bytes());
    TokenHash(digest.iter().map(|b| format!("{b:02x}")).collect())
}

#[tokio::test]
async fn used_links_are_forgotten_after_the_grace_period_and_their_accounts_stay() {
    let data = tempfile::tempdir().expect("temp dir");
    let day = 24 * 3600;
    let registered = now() - 10 * day;
    let old_token = "ab".repeat(32);
    {
        let store = Store::open(data.path()).expect("a fresh store");
        let account = NewAccount {
            username: "wanda".to_owned(),
            email: "wanda@example.com".to_owned(),
            password_hash: "not needed here".to_owned(),
            now: registered,
            lang: "en".to_owned(),
        };
        let link = NewToken {
            hash: stored_hash(&old_token),
            expires_at: registered + day,
        };
        let mail = MailDraft {
            to: "wanda@example.com".to_owned(),
            subject: "Verify".to_owned(),
            text: "the link".to_owned(),
        };
        store
            .register(account, link, mail, day)
            .expect("registered ten days ago");
        let clicked = store
            .verify(&stored_hash(&old_token), registered + 60)
            .expect("verified then");
        assert!(matches!(clicked, VerifyOutcome::Verified(_)), "{clicked:?}");
        store.close().expect("closed");
    }
    let server = TestServer::start_in(data, relaxed).await;
    let old_link = format!("/verify?token={old_token}");
    let page = wait_for(|| async {
        let page = get(&server, &old_link).await;
        (page.status == StatusCode::NOT_FOUND).then_some(page)
    })
    .await;
    assert!(page.contains("unknown link"), "{}", page.text);
    // The account is not touched: still verified, its name still taken.
    register(&server, "wanda", "other@example.com")
        .await
        .expect_error(StatusCode::CONFLICT, "username_taken");
    // A link used today still says so.
    let email = register_and_verify(&server, "xena").await;
    let link = outbox_links(&server, &email, 1).await.remove(0);
    assert_already_verified(&click(&server, &link).await);
}
