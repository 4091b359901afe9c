//! Administration's foundation over real HTTP and the real binary: the first-run setup link,
//! the `roommanager admin` commands, the admin login and its rate limits, admin and user
//! sessions kept apart on every admin route, an admin's record delete with its audit entry, and
//! the dashboard.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::COOKIE;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::accounts::{
    get_auth, guest_token, login, relaxed, send, verified_user, Reply, PASSWORD,
};
use crate::common::{run_command_with_input, wait_for, Process, TestServer};
use crate::records::list_recording;
use crate::rooms::Site;
use crate::web_hardening::{cookie_value, form_token, no_redirects, post_form_at};

pub(crate) const ADMIN_PASSWORD: &str = "admin password 1";

/// Creates an admin in the running server's store, as `roommanager admin create` does.
pub(crate) fn make_admin(server: &TestServer, name: &str) {
    roommanager::admin::create(&server.app().store, name, ADMIN_PASSWORD).expect("admin created");
}

async fn admin_login_with(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    password: &str,
) -> Reply {
    send(
        client
            .post(format!("{base}/api/v1/admin/login"))
            .json(&json!({"name": name, "password": password})),
    )
    .await
}

/// An admin session token, by the JSON login.
pub(crate) async fn admin_token(base: &str, name: &str, password: &str) -> String {
    let reply = admin_login_with(&reqwest::Client::new(), base, name, password)
        .await
        .expect(StatusCode::OK);
    reply.json()["token"].as_str().expect("a token").to_owned()
}

pub(crate) async fn audit(base: &str, token: &str, query: &str) -> Value {
    send(
        reqwest::Client::new()
            .get(format!("{base}/api/v1/admin/audit{query}"))
            .bearer_auth(token),
    )
    .await
    .expect(StatusCode::OK)
    .json()
}

/// A client whose connections come from `ip` (a loopback address).
pub(crate) fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(ip))
        .build()
        .expect("a client bound to a loopback address")
}

/// The setup link the server logged at start.
fn setup_link(process: &mut Process) -> String {
    let line = process.expect_log(&["/admin/setup?token="]);
    let at = line.find("http://").expect("a URL in the line");
    line[at..]
        .split_whitespace()
        .next()
        .expect("the URL")
        .to_owned()
}

fn token_in(link: &str) -> String {
    link.split("token=").nth(1).expect("a token").to_owned()
}

/// A pre-session cookie and the form token that goes with it, from an admin page.
pub(crate) async fn form_keys(url: String) -> (String, String) {
    let page = send(no_redirects().get(url)).await.expect(StatusCode::OK);
    let pre = cookie_value(&page, "rm_csrf").expect("a pre-session cookie");
    (format!("rm_csrf={pre}"), form_token(&page.text))
}

async fn stop(mut process: Process) {
    process.signal("-TERM");
    process
        .wait_exit(Duration::from_secs(20))
        .expect("the server stops on SIGTERM");
}

#[tokio::test]
async fn the_setup_link_creates_the_first_admin_once() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut process = Process::serve(data.path(), "");
    let link = setup_link(&mut process);
    let base = process.base.clone();
    assert!(link.starts_with(&base), "{link}");

    // Wrong or malformed tokens are refused.
    for wrong in ["0".repeat(64), "abc".to_owned(), String::new()] {
        let reply = send(no_redirects().get(format!("{base}/admin/setup?token={wrong}"))).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
        assert!(reply.contains("setup link is not valid"), "{}", reply.text);
    }

    let (cookies, csrf) = form_keys(link.clone()).await;
    let setup = format!("{base}/admin/setup");
    let fields = |token: &str, password: &str| {
        format!("csrf={csrf}&token={token}&name=root&password={password}")
    };
    let good = token_in(&link);
    // A wrong token in the form, a form without its CSRF token, a password too short.
    let wrong = post_form_at(
        setup.clone(),
        &cookies,
        &fields(&"0".repeat(64), "admin+password+1"),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{}", wrong.text);
    let forged = format!("token={good}&name=root&password=admin+password+1");
    let forged = post_form_at(setup.clone(), &cookies, &forged).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    let short = post_form_at(setup.clone(), &cookies, &fields(&good, "short")).await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST, "{}", short.text);
    assert!(short.contains("at least 8 characters"), "{}", short.text);

    // The right token creates the admin and logs it in, with a cookie for /admin only.
    let created = post_form_at(setup.clone(), &cookies, &fields(&good, "admin+password+1")).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
    assert_eq!(created.header("location").as_deref(), Some("/admin"));
    let set = created
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("rm_admin="))
        .expect("an admin cookie");
    assert!(
        set.contains("Path=/admin;") && set.contains("HttpOnly"),
        "{set}"
    );
    let session = cookie_value(&created, "rm_admin").expect("an admin session");
    let dashboard = send(
        no_redirects()
            .get(format!("{base}/admin"))
            .header(COOKIE, format!("rm_admin={session}")),
    )
    .await
    .expect(StatusCode::OK);
    assert!(dashboard.contains("<h1>Dashboard</h1>") && dashboard.contains("root"));

    // Once: the same link (and any other) is refused now that an admin exists.
    let again = post_form_at(setup.clone(), &cookies, &fields(&good, "admin+password+2")).await;
    assert_eq!(again.status, StatusCode::GONE, "{}", again.text);
    assert!(again.contains("An admin exists already"), "{}", again.text);
    let page = send(no_redirects().get(&link)).await;
    assert_eq!(page.status, StatusCode::GONE, "{}", page.text);
    admin_login_with(&reqwest::Client::new(), &base, "root", "admin password 2")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");

    // The creation is in the audit log, with where it came from.
    let token = admin_token(&base, "root", ADMIN_PASSWORD).await;
    let log = audit(&base, &token, "").await;
    let first = &log["entries"][0];
    assert_eq!(first["action"], "create_admin", "{log}");
    assert_eq!(first["admin"], "root", "{log}");
    assert_eq!(first["target"], "admin:root", "{log}");
    assert_eq!(first["ip"], "127.0.0.1", "{log}");

    // With an admin, a restart logs no link.
    stop(process).await;
    // The access log is at `debug`: asked for as roommanager.toml says.
    let mut restarted = Process::serve_with_env(
        data.path(),
        "",
        &[("RUST_LOG", Some("info,roommanager::web=debug".as_ref()))],
    );
    send(reqwest::Client::new().get(format!("{}/healthz", restarted.base)))
        .await
        .expect(StatusCode::OK);
    restarted.expect_log(&["request", "/healthz"]);
    assert!(
        !restarted
            .log
            .iter()
            .any(|l| l.contains("/admin/setup?token=")),
        "{}",
        restarted.log.join("\n")
    );
}

#[tokio::test]
async fn a_setup_link_expires_and_each_start_replaces_it() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut first = Process::serve(data.path(), "");
    let old = token_in(&setup_link(&mut first));
    stop(first).await;

    let mut second = Process::serve(data.path(), "[admin]\nsetup_link_secs = 1\n");
    let link = setup_link(&mut second);
    let base = second.base.clone();
    assert_ne!(token_in(&link), old);
    // The first start's link stopped working when the second made its own.
    let stale = send(no_redirects().get(format!("{base}/admin/setup?token={old}"))).await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN, "{}", stale.text);

    // After its lifetime the link is refused, as a page and as a form.
    wait_for(|| {
        let link = link.clone();
        async move {
            let reply = send(no_redirects().get(link)).await;
            (reply.status == StatusCode::FORBIDDEN).then_some(())
        }
    })
    .await;
    let (cookies, csrf) = form_keys(format!("{base}/admin/login")).await;
    let fields = format!(
        "csrf={csrf}&token={}&name=root&password=admin+password+1",
        token_in(&link)
    );
    let late = post_form_at(format!("{base}/admin/setup"), &cookies, &fields).await;
    assert_eq!(late.status, StatusCode::FORBIDDEN, "{}", late.text);
    admin_login_with(&reqwest::Client::new(), &base, "root", ADMIN_PASSWORD)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[tokio::test]
async fn the_command_line_creates_lists_changes_and_deletes_admins() {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_str().expect("a UTF-8 temp path").to_owned();
    let cwd = data.path().to_owned();
    let admin = |args: &[&str], input: Option<&str>| {
        let mut all = vec!["--data-dir", dir.as_str(), "admin"];
        all.extend_from_slice(args);
        run_command_with_input(&cwd, &all, input)
    };
    let password = format!("{ADMIN_PASSWORD}\n");

    let (status, out, err) = admin(&["create", "root", "--password-stdin"], Some(&password));
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("created the admin \"root\""), "{out}");
    for (args, input, says) in [
        (
            &["create", "ROOT", "--password-stdin"][..],
            Some(password.as_str()),
            "exists already",
        ),
        (
            &["create", "bob", "--password-stdin"][..],
            Some("short\n"),
            "at least 8 characters",
        ),
        (
            &["create", "bad name!", "--password-stdin"][..],
            Some(password.as_str()),
            "may only use",
        ),
        (&["create", "carol"][..], None, "--password-stdin"),
        (&["delete", "nobody"][..], None, "no admin with that name"),
    ] {
        let (status, out, err) = admin(args, input);
        assert_eq!(status.code(), Some(1), "{args:?}: {out}{err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let (_, list, _) = admin(&["list"], None);
    assert!(
        list.starts_with("root\t") && list.contains("never logged in"),
        "{list}"
    );
    assert_eq!(list.lines().count(), 1, "{list}");

    // The admin logs in; the store is the server's while it runs.
    let server = TestServer::start_in(data, |_| {}).await;
    let old_token = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let (status, _, err) = admin(&["create", "dave", "--password-stdin"], Some(&password));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("stop the server first"), "{err}");
    let data = server.stop_keep_data().await;

    let (status, out, err) = admin(
        &["passwd", "root", "--password-stdin"],
        Some("new password 2\n"),
    );
    assert!(status.success(), "{out}{err}");
    let (_, list, _) = admin(&["list"], None);
    assert!(
        list.contains("last login at") && list.contains("from 127.0.0.1"),
        "{list}"
    );

    // A new password ends the sessions and replaces the old one.
    let server = TestServer::start_in(data, |_| {}).await;
    get_auth(&server, "/api/v1/admin/audit", &old_token)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "admin_required");
    admin_login_with(&server.client, &server.base, "root", ADMIN_PASSWORD)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let token = admin_token(&server.base, "root", "new password 2").await;
    let log = audit(&server.base, &token, "").await;
    let actions: Vec<(&str, &str)> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["admin"].as_str().unwrap_or(""),
                e["action"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [("cli", "change_admin_password"), ("cli", "create_admin")],
        "{log}"
    );
    let data = server.stop_keep_data().await;

    let (status, out, err) = admin(&["delete", "root"], None);
    assert!(status.success(), "{out}{err}");
    let (_, list, _) = admin(&["list"], None);
    assert!(list.contains("no admins yet"), "{list}");
    let server = TestServer::start_in(data, |_| {}).await;
    get_auth(&server, "/api/v1/admin/audit", &token)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "admin_required");
    admin_login_with(&server.client, &server.base, "root", "new password 2")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[tokio::test]
async fn admin_logins_are_rate_limited_per_client_and_per_name() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.limits.login_free_failures = 5;
        c.limits.login_per_ip = 12;
    })
    .await;
    make_admin(&server, "root");
    verified_user(&server, "carol").await;
    let base = server.base.clone();
    let here = client_from([127, 0, 0, 1]);

    // Wrong passwords for root from one client: five cost nothing, the sixth makes it wait.
    for _ in 0..6 {
        admin_login_with(&here, &base, "root", "wrong password")
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    let waiting = admin_login_with(&here, &base, "root", ADMIN_PASSWORD)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(waiting.header("retry-after").is_some());
    // The owner elsewhere logs in; users' logins are counted apart.
    admin_login_with(&client_from([127, 0, 0, 2]), &base, "root", ADMIN_PASSWORD)
        .await
        .expect(StatusCode::OK);
    login(&server, "carol", PASSWORD)
        .await
        .expect(StatusCode::OK);

    // One client trying many names runs out of attempts, whatever the names.
    let prober = client_from([127, 0, 0, 3]);
    for n in 0..12 {
        admin_login_with(&prober, &base, &format!("guess{n}"), "wrong password")
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    admin_login_with(&prober, &base, "root", ADMIN_PASSWORD)
        .await
        .expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    admin_login_with(&client_from([127, 0, 0, 2]), &base, "root", ADMIN_PASSWORD)
        .await
        .expect(StatusCode::OK);

    // A giant name is refused before it costs a lookup or a hash.
    let giant = "a".repeat(100_000);
    admin_login_with(&client_from([127, 0, 0, 4]), &base, &giant, ADMIN_PASSWORD)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_name");
}

/// How a route is reached: a JSON endpoint or a page.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Api,
    Page,
}

#[tokio::test]
async fn every_admin_route_refuses_anyone_but_an_admin() {
    let server = TestServer::start_with(relaxed).await;
    make_admin(&server, "root");
    let (_, user) = verified_user(&server, "carol").await;
    let guest = guest_token(&server).await;
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let routes = [
        (Kind::Page, "GET", "/admin"),
        (Kind::Api, "GET", "/api/v1/admin/dashboard"),
        (Kind::Api, "GET", "/api/v1/admin/audit"),
        (Kind::Api, "GET", "/api/v1/admin/users"),
        (Kind::Api, "GET", "/api/v1/admin/users/1"),
        (Kind::Api, "POST", "/api/v1/admin/users/1/verify"),
        (Kind::Api, "DELETE", "/api/v1/admin/users/1"),
        (
            Kind::Api,
            "POST",
            "/api/v1/admin/users/1/resend-verification",
        ),
        (Kind::Api, "GET", "/api/v1/admin/stats/logins"),
        (Kind::Api, "GET", "/api/v1/admin/stats/records?format=csv"),
        (Kind::Page, "GET", "/admin/stats"),
        (Kind::Page, "GET", "/admin/users"),
        (Kind::Page, "GET", "/admin/users/1"),
        (Kind::Page, "POST", "/admin/users/1/verify"),
        (Kind::Page, "POST", "/admin/users/1/delete"),
        (Kind::Page, "POST", "/admin/users/1/resend-verification"),
        (Kind::Page, "GET", "/admin/stats/lives/csv"),
        (Kind::Page, "GET", "/admin/audit"),
        (Kind::Page, "GET", "/admin/audit/csv"),
        (Kind::Api, "POST", "/api/v1/admin/users/1/bans"),
        (Kind::Api, "DELETE", "/api/v1/admin/users/1/bans/chat"),
        (Kind::Api, "GET", "/api/v1/admin/rooms"),
        (Kind::Api, "POST", "/api/v1/admin/rooms/1/close"),
        (Kind::Api, "GET", "/api/v1/admin/ip-bans"),
        (Kind::Api, "POST", "/api/v1/admin/ip-bans"),
        (Kind::Api, "DELETE", "/api/v1/admin/ip-bans/1"),
        (Kind::Page, "GET", "/admin/ip-bans"),
        (Kind::Page, "POST", "/admin/ip-bans"),
        (Kind::Page, "POST", "/admin/ip-bans/1/lift"),
        (Kind::Api, "POST", "/api/v1/admin/logout"),
        (Kind::Api, "DELETE", "/api/v1/admin/rooms/1/danmaku/1"),
        (Kind::Api, "GET", "/admin/session.json"),
        (
            Kind::Api,
            "POST",
            "/admin/moderation/rooms/1/danmaku/1/delete",
        ),
        (Kind::Api, "POST", "/admin/moderation/users/1/bans"),
        (Kind::Page, "POST", "/admin/users/1/bans"),
        (Kind::Page, "POST", "/admin/users/1/bans/chat/lift"),
        (Kind::Page, "GET", "/admin/rooms"),
        (Kind::Page, "POST", "/admin/rooms/1/close"),
        (Kind::Page, "GET", "/admin/records"),
        (Kind::Page, "POST", "/admin/records/1/delete"),
        (Kind::Page, "GET", "/admin/mail"),
        (Kind::Page, "GET", "/admin/mail/1"),
        (Kind::Page, "POST", "/admin/mail/test"),
        (Kind::Api, "GET", "/api/v1/admin/mail"),
        (Kind::Api, "GET", "/api/v1/admin/mail/1"),
        (Kind::Api, "POST", "/api/v1/admin/mail/test"),
    ];
    // Who asks: nobody, a guest and a user, by bearer token and by session cookie.
    let askers: [(&str, Option<String>, Option<String>); 5] = [
        ("nobody", None, None),
        ("guest bearer", Some(guest.clone()), None),
        ("user bearer", Some(user.clone()), None),
        ("guest cookie", None, Some(format!("rm_session={guest}"))),
        (
            "user cookie",
            None,
            Some(format!("rm_session={user}; rm_admin={user}")),
        ),
    ];
    let client = no_redirects();
    for (kind, method, path) in routes {
        for (who, bearer, cookie) in &askers {
            let mut request = client
                .request(method.parse().expect("a method"), server.url(path))
                .header("x-rm-csrf", "1");
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            if let Some(cookie) = cookie {
                request = request.header(COOKIE, cookie);
            }
            let reply = send(request).await;
            match kind {
                Kind::Api => {
                    assert_eq!(
                        reply.status,
                        StatusCode::UNAUTHORIZED,
                        "{method} {path} as {who}"
                    );
                    assert_eq!(reply.code(), "admin_required", "{method} {path} as {who}");
                }
                Kind::Page => {
                    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path} as {who}");
                    assert_eq!(reply.header("location").as_deref(), Some("/admin/login"));
                }
            }
        }
    }
    // The admin is let in on each…
    send(
        client
            .get(server.url("/admin"))
            .header(COOKIE, format!("rm_admin={admin}")),
    )
    .await
    .expect(StatusCode::OK);
    for path in ["/api/v1/admin/dashboard", "/api/v1/admin/audit"] {
        get_auth(&server, path, &admin).await.expect(StatusCode::OK);
    }
    // …but an admin page takes no bearer token, and the admin JSON no cookie.
    let reply = send(client.get(server.url("/admin")).bearer_auth(&admin)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    send(
        client
            .get(server.url("/api/v1/admin/audit"))
            .header(COOKIE, format!("rm_admin={admin}")),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "admin_required");

    // An admin session is no user session, however it is presented.
    get_auth(&server, "/api/v1/me", &admin)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "not_logged_in");
    for cookie in [format!("rm_session={admin}"), format!("rm_admin={admin}")] {
        send(client.get(server.url("/api/v1/me")).header(COOKIE, &cookie))
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "not_logged_in");
        let page = send(client.get(server.url("/me")).header(COOKIE, &cookie)).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{cookie}");
        assert_eq!(page.header("location").as_deref(), Some("/login"));
    }

    // Logging out ends the admin's session at once.
    send(
        client
            .post(server.url("/api/v1/admin/logout"))
            .bearer_auth(&admin),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    get_auth(&server, "/api/v1/admin/audit", &admin)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "admin_required");
}

#[tokio::test]
async fn an_admin_deletes_any_record_and_the_audit_log_says_so() {
    let server = TestServer::start_with(relaxed).await;
    make_admin(&server, "root");
    let (host, _) = verified_user(&server, "hostess").await;
    let (_, other) = verified_user(&server, "other").await;
    let record = list_recording(&server, host, "Late show", 1_700_000_000, 60, None)
        .id
        .0;
    let path = format!("/api/v1/records/{record}");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let delete = |token: &str, query: &str| {
        send(
            server
                .client
                .delete(server.url(&format!("{path}{query}")))
                .bearer_auth(token),
        )
    };

    // Not the host's, not an admin's: refused. A reason too long: refused, record kept.
    delete(&other, "")
        .await
        .expect_error(StatusCode::FORBIDDEN, "not_your_record");
    let long = "x".repeat(501);
    delete(&admin, &format!("?reason={long}"))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_reason");
    send(server.client.get(server.url(&path)))
        .await
        .expect(StatusCode::OK);

    delete(&admin, "?reason=spam%20stream")
        .await
        .expect(StatusCode::NO_CONTENT);
    send(server.client.get(server.url(&path)))
        .await
        .expect_error(StatusCode::NOT_FOUND, "record_not_found");
    delete(&admin, "")
        .await
        .expect_error(StatusCode::NOT_FOUND, "record_not_found");

    let log = audit(&server.base, &admin, "").await;
    let entry = &log["entries"][0];
    assert_eq!(entry["admin"], "root", "{log}");
    assert_eq!(entry["action"], "delete_record", "{log}");
    assert_eq!(entry["target"], format!("record:{record}"), "{log}");
    assert_eq!(entry["reason"], "spam stream", "{log}");
    assert_eq!(entry["ip"], "127.0.0.1", "{log}");
    assert!(
        entry["at"].as_u64().is_some_and(|at| at > 1_700_000_000),
        "{log}"
    );
    // Newest first, a page at a time: the admin's creation is the older entry.
    assert_eq!(log["total"], 2, "{log}");
    let second = audit(&server.base, &admin, "?page=2&per_page=1").await;
    assert_eq!(second["entries"][0]["action"], "create_admin", "{second}");
    assert_eq!(second["entries"].as_array().map(Vec::len), Some(1));
    send(
        server
            .client
            .get(server.url("/api/v1/admin/audit?per_page=100000"))
            .bearer_auth(&admin),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
}

#[tokio::test]
async fn the_dashboard_shows_the_site_now_after_a_login_by_the_form() {
    let site = Site::start_with(relaxed).await;
    let server = &site.server;
    make_admin(server, "root");
    let (_host, room) = site.live_host("hostess").await;
    let base = server.base.clone();

    // The login form, then the dashboard with the admin cookie.
    let (cookies, csrf) = form_keys(format!("{base}/admin/login")).await;
    let login_at = format!("{base}/admin/login");
    let wrong = post_form_at(
        login_at.clone(),
        &cookies,
        &format!("csrf={csrf}&name=root&password=nope"),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.text);
    assert!(
        wrong.contains("Wrong admin name or password"),
        "{}",
        wrong.text
    );
    let fields = format!("csrf={csrf}&name=root&password=admin+password+1");
    let forged = post_form_at(
        login_at.clone(),
        &cookies,
        "name=root&password=admin+password+1",
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    let logged_in = post_form_at(login_at, &cookies, &fields).await;
    assert_eq!(
        logged_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        logged_in.text
    );
    let session = format!(
        "rm_admin={}",
        cookie_value(&logged_in, "rm_admin").expect("an admin cookie")
    );
    let page = send(
        no_redirects()
            .get(format!("{base}/admin"))
            .header(COOKIE, &session),
    )
    .await
    .expect(StatusCode::OK);
    for shown in [
        r#"<span class="stat-value" id="live-rooms">1</span>"#,
        r#"<span class="stat-value" id="registrations-today">1</span>"#,
        &format!(r#"<a href="/room/{room}">"#),
        "hostess",
        r#"href="/admin/users""#,
        r#"href="/admin/records""#,
        r#"href="/admin/rooms""#,
        r#"href="/admin/mail""#,
    ] {
        assert!(page.text.contains(shown), "{shown} not in:\n{}", page.text);
    }

    // The same figures as JSON.
    let token = admin_token(&base, "root", ADMIN_PASSWORD).await;
    let figures = get_auth(server, "/api/v1/admin/dashboard", &token)
        .await
        .json();
    assert_eq!(figures["live_rooms"][0]["room_id"], room, "{figures}");
    assert_eq!(figures["viewers_now"], 1, "{figures}");
    assert_eq!(figures["registrations_today"], 1, "{figures}");
    assert!(
        figures["disk"]["free_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0),
        "{figures}"
    );
    assert!(figures["media"]["backend"].is_string(), "{figures}");

    // Logging out by the nav's form ends the session.
    let logout = post_form_at(
        format!("{base}/admin/logout"),
        &session,
        &format!("csrf={}", form_token(&page.text)),
    )
    .await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER, "{}", logout.text);
    assert_eq!(cookie_value(&logout, "rm_admin").as_deref(), Some(""));
    let after = send(
        no_redirects()
            .get(format!("{base}/admin"))
            .header(COOKIE, &session),
    )
    .await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
}
