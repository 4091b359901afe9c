//! IP bans for guests on a real server (scripted media plane): a ban stops new guests from the
//! address by the API and the form while other addresses and registered users go on; a guest
//! already in a room leaves it at the ban and cannot join again; a timed ban runs out without a
//! restart; a lift lets guests in again; bad ranges, too wide ones and bans past the cap are
//! refused; the page works without JavaScript; each action is in the audit log.

use reqwest::header::{CONTENT_TYPE, COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::accounts::{new_guest, relaxed, send, Reply, PASSWORD};
use crate::admin::{admin_token, audit, client_from, form_keys, make_admin, ADMIN_PASSWORD};
use crate::common::wait_for;
use crate::rooms::{join, Site};
use crate::web_hardening::{form_token, post_form_at};

/// Another loopback address than the one the test's own clients use.
const OTHER: [u8; 4] = [127, 0, 0, 2];
const BANS: &str = "/api/v1/admin/ip-bans";

struct Admin {
    base: String,
    token: String,
}

impl Admin {
    async fn of(site: &Site) -> Admin {
        make_admin(&site.server, "root");
        let base = site.server.base.clone();
        let token = admin_token(&base, "root", ADMIN_PASSWORD).await;
        Admin { base, token }
    }

    async fn ban(&self, body: Value) -> Reply {
        send(
            reqwest::Client::new()
                .post(format!("{}{BANS}", self.base))
                .bearer_auth(&self.token)
                .json(&body),
        )
        .await
    }

    /// Bans `range` for `reason`; the new ban's id.
    async fn banned(&self, range: &str, reason: &str) -> u64 {
        let reply = self
            .ban(json!({"range": range, "reason": reason}))
            .await
            .expect(StatusCode::CREATED);
        reply.json()["id"].as_u64().expect("an id")
    }

    async fn lift(&self, id: u64, query: &str) -> Reply {
        send(
            reqwest::Client::new()
                .delete(format!("{}{BANS}/{id}{query}", self.base))
                .bearer_auth(&self.token),
        )
        .await
    }

    async fn list(&self) -> Vec<Value> {
        let reply = send(
            reqwest::Client::new()
                .get(format!("{}{BANS}", self.base))
                .bearer_auth(&self.token),
        )
        .await
        .expect(StatusCode::OK);
        reply.json()["bans"].as_array().expect("bans").clone()
    }

    /// The audit entries of `action`, newest first.
    async fn audited(&self, action: &str) -> Vec<Value> {
        let entries = audit(&self.base, &self.token, "").await;
        entries["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["action"] == action)
            .cloned()
            .collect()
    }
}

/// `POST /api/v1/guest` from `ip`, as the site's script sends it.
async fn guest_from(base: &str, ip: [u8; 4]) -> Reply {
    send(
        client_from(ip)
            .post(format!("{base}/api/v1/guest"))
            .header("x-rm-csrf", "1"),
    )
    .await
}

#[tokio::test]
async fn an_ip_ban_refuses_new_guests_from_it_and_nobody_else_until_lifted() {
    let site = Site::start_with(relaxed).await;
    let admin = Admin::of(&site).await;
    let base = site.server.base.clone();
    site.user("ipuser1").await;

    let reply = admin
        .ban(json!({"range": "127.0.0.2", "reason": "guest spam"}))
        .await
        .expect(StatusCode::CREATED);
    let ban = reply.json();
    assert_eq!(
        (&ban["range"], &ban["reason"], &ban["until"], &ban["admin"]),
        (
            &json!("127.0.0.2"),
            &json!("guest spam"),
            &Value::Null,
            &json!("root")
        )
    );
    let id = ban["id"].as_u64().expect("an id");

    // The API and the form refuse a guest from the banned address, naming the reason.
    let refused = guest_from(&base, OTHER)
        .await
        .expect_error(StatusCode::FORBIDDEN, "ip_banned");
    assert!(refused.contains("guest spam"), "{}", refused.text);
    let (cookies, csrf) = form_keys(site.server.url("/login")).await;
    let form = send(
        client_from(OTHER)
            .post(site.server.url("/guest"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(COOKIE, &cookies)
            .body(format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(form.status, StatusCode::FORBIDDEN, "{}", form.text);
    assert!(form.contains("guest spam"), "{}", form.text);

    // Another address still gets guests (API and form); a registered user logs in from the
    // banned one.
    guest_from(&base, [127, 0, 0, 1])
        .await
        .expect(StatusCode::CREATED);
    post_form_at(site.server.url("/guest"), &cookies, &format!("csrf={csrf}"))
        .await
        .expect(StatusCode::SEE_OTHER);
    send(
        client_from(OTHER)
            .post(format!("{base}/api/v1/login"))
            .json(&json!({"login": "ipuser1", "password": PASSWORD})),
    )
    .await
    .expect(StatusCode::OK);

    // Lifted: guests from there again; the ban stays in the history.
    admin
        .lift(id, "?reason=appeal")
        .await
        .expect(StatusCode::NO_CONTENT);
    guest_from(&base, OTHER).await.expect(StatusCode::CREATED);
    admin
        .lift(id, "")
        .await
        .expect_error(StatusCode::NOT_FOUND, "ip_ban_not_found");
    let listed = admin.list().await;
    assert_eq!(listed.len(), 1);
    assert!(listed[0]["lifted_at"].as_u64().is_some(), "{listed:?}");
    assert_eq!(listed[0]["created_at"], ban["created_at"]);

    let given = &admin.audited("ip_ban").await[0];
    assert_eq!(
        (&given["target"], &given["reason"], &given["ip"]),
        (
            &json!(format!("ip_ban:{id}:127.0.0.2")),
            &json!("guest spam"),
            &json!("127.0.0.1")
        )
    );
    let lifted = admin.audited("ip_unban").await;
    assert_eq!(lifted.len(), 1, "a refused lift is not audited");
    assert_eq!(
        (&lifted[0]["target"], &lifted[0]["reason"]),
        (&json!(format!("ip_ban:{id}")), &json!("appeal"))
    );
}

#[tokio::test]
async fn a_guest_in_a_room_leaves_it_at_an_ip_ban_while_registered_users_stay() {
    let site = Site::start_with(relaxed).await;
    let admin = Admin::of(&site).await;
    let (mut host, room) = site.live_host("iphost2").await;
    let guest_token = site.guest().await;
    let mut guest = site.ws(&guest_token).await;
    join(&mut guest, room).await;
    let (_, fan_token) = site.user("ipfan2").await;
    let mut fan = site.ws(&fan_token).await;
    join(&mut fan, room).await;

    // Every test client comes from 127.0.0.1: the ban covers the guest and the registered
    // users alike, and only the guest is affected.
    let id = admin.banned("127.0.0.0/24", "raid").await;
    let told = guest.expect_error("join_room").await;
    assert_eq!(told, "ip_banned");
    guest
        .send(json!({"type": "join_room", "room_id": room}))
        .await;
    assert_eq!(guest.expect_error("join_room").await, "ip_banned");
    new_guest(&site.server)
        .await
        .expect_error(StatusCode::FORBIDDEN, "ip_banned");

    fan.send(json!({"type": "danmaku", "text": "still chatting"}))
        .await;
    host.expect_where("danmaku", |m| m["text"] == "still chatting")
        .await;
    let (_, late_token) = site.user("iplate2").await;
    let mut late = site.ws(&late_token).await;
    join(&mut late, room).await;
    // The room counts the guest out.
    wait_for(|| async {
        let rooms = site.live_rooms().await;
        rooms
            .iter()
            .any(|r| r["room_id"] == room && r["audience"] == 3)
            .then_some(())
    })
    .await;
    fan.expect_none("error", std::time::Duration::from_millis(200))
        .await;

    admin.lift(id, "").await.expect(StatusCode::NO_CONTENT);
    join(&mut guest, room).await;
}

#[tokio::test]
async fn a_timed_ip_ban_runs_out_without_a_restart() {
    let site = Site::start_with(relaxed).await;
    let admin = Admin::of(&site).await;
    let base = site.server.base.clone();
    let until = roommanager::store::unix_now() + 2;
    let reply = admin
        .ban(json!({"range": "127.0.0.2/32", "reason": "cool off", "until": until}))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(reply.json()["until"], until);
    let refused = guest_from(&base, OTHER)
        .await
        .expect_error(StatusCode::FORBIDDEN, "ip_banned");
    assert!(refused.contains("until"), "{}", refused.text);

    wait_for(|| async {
        let reply = guest_from(&base, OTHER).await;
        (reply.status == StatusCode::CREATED).then_some(())
    })
    .await;
    assert!(roommanager::store::unix_now() >= until);
    let listed = admin.list().await;
    assert_eq!(listed[0]["in_force"], false, "{listed:?}");
    assert_eq!(listed[0]["lifted_at"], Value::Null);
}

#[tokio::test]
async fn bad_and_too_wide_ranges_and_bans_past_the_cap_are_refused() {
    let site = Site::start_with(|c| {
        relaxed(c);
        c.admin.max_ip_bans = 3;
    })
    .await;
    let admin = Admin::of(&site).await;
    let past = roommanager::store::unix_now() - 1;
    let cases = [
        (json!({"range": "", "reason": "x"}), "invalid_ip_range"),
        (
            json!({"range": "10.0.0", "reason": "x"}),
            "invalid_ip_range",
        ),
        (
            json!({"range": "example.com", "reason": "x"}),
            "invalid_ip_range",
        ),
        (
            json!({"range": "10.0.0.0/33", "reason": "x"}),
            "invalid_ip_range",
        ),
        (
            json!({"range": "1".repeat(100_000), "reason": "x"}),
            "invalid_ip_range",
        ),
        (
            json!({"range": "0.0.0.0/0", "reason": "x"}),
            "ip_range_too_wide",
        ),
        (
            json!({"range": "10.0.0.0/8", "reason": "x"}),
            "ip_range_too_wide",
        ),
        (json!({"range": "::/0", "reason": "x"}), "ip_range_too_wide"),
        (
            json!({"range": "fd00::/32", "reason": "x"}),
            "ip_range_too_wide",
        ),
        (
            json!({"range": "10.0.0.1", "reason": " "}),
            "invalid_reason",
        ),
        (
            json!({"range": "10.0.0.1", "reason": "x", "until": past}),
            "invalid_until",
        ),
    ];
    for (body, code) in cases {
        admin
            .ban(body.clone())
            .await
            .expect_error(StatusCode::BAD_REQUEST, code);
    }
    let wide = admin
        .ban(json!({"range": "0.0.0.0/0", "reason": "x"}))
        .await;
    assert!(wide.contains("/16"), "{}", wide.text);

    // The widest allowed ranges pass; the cap counts bans in force only.
    let first = admin.banned("10.1.0.0/16", "a").await;
    admin.banned("fd00:1::/48", "b").await;
    admin.banned("10.0.0.7/24", "c").await;
    admin
        .ban(json!({"range": "10.0.9.9", "reason": "d"}))
        .await
        .expect_error(StatusCode::CONFLICT, "too_many_ip_bans");
    let ranges: Vec<Value> = admin
        .list()
        .await
        .iter()
        .map(|b| b["range"].clone())
        .collect();
    assert_eq!(
        ranges,
        [
            json!("10.0.0.0/24"),
            json!("fd00:1::/48"),
            json!("10.1.0.0/16")
        ]
    );
    admin.lift(first, "").await.expect(StatusCode::NO_CONTENT);
    admin.banned("10.0.9.9", "d").await;
    assert_eq!(
        admin.audited("ip_ban").await.len(),
        4,
        "nothing refused is audited"
    );

    // Nothing of that touches a guest from elsewhere.
    new_guest(&site.server).await.expect(StatusCode::CREATED);
}

#[tokio::test]
async fn the_ip_bans_page_bans_and_lifts_without_javascript() {
    let site = Site::start_with(relaxed).await;
    let admin = Admin::of(&site).await;
    let session = format!("rm_admin={}", admin.token);
    let page = || async {
        send(
            reqwest::Client::new()
                .get(site.server.url("/admin/ip-bans"))
                .header(COOKIE, &session),
        )
        .await
        .expect(StatusCode::OK)
    };
    let empty = page().await;
    assert!(empty.contains("No IP ban in force"), "{}", empty.text);
    assert!(
        empty.contains(r#"<a href="/admin/ip-bans" aria-current="page">IP bans</a>"#),
        "{}",
        empty.text
    );
    let csrf = form_token(&empty.text);
    let url = site.server.url("/admin/ip-bans");

    // A form without its token, a bad range (the page says why and keeps what was typed), a
    // date in the past.
    post_form_at(url.clone(), &session, "range=127.0.0.2&reason=x&expires=1h")
        .await
        .expect(StatusCode::FORBIDDEN);
    let bad = post_form_at(
        url.clone(),
        &session,
        &format!("csrf={csrf}&range=0.0.0.0%2F0&reason=kept+text&expires=1h"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert!(
        bad.contains("too wide") && bad.contains("kept text"),
        "{}",
        bad.text
    );
    post_form_at(
        url.clone(),
        &session,
        &format!("csrf={csrf}&range=127.0.0.2&reason=x&expires=date&date=2001-01-01"),
    )
    .await
    .expect(StatusCode::BAD_REQUEST);

    post_form_at(
        url.clone(),
        &session,
        &format!("csrf={csrf}&range=127.0.0.2&reason=page+ban&expires=1h"),
    )
    .await
    .expect(StatusCode::SEE_OTHER);
    guest_from(&site.server.base, OTHER)
        .await
        .expect_error(StatusCode::FORBIDDEN, "ip_banned");
    let listed = admin.list().await;
    let id = listed[0]["id"].as_u64().expect("an id");
    let until = listed[0]["until"].as_u64().expect("an hour's ban ends");
    assert!(until.abs_diff(listed[0]["created_at"].as_u64().expect("created") + 3600) <= 1);
    let shown = page().await;
    assert!(
        shown.contains("page ban") && shown.contains(&format!("/admin/ip-bans/{id}/lift")),
        "{}",
        shown.text
    );

    post_form_at(
        site.server.url(&format!("/admin/ip-bans/{id}/lift")),
        &session,
        &format!("csrf={csrf}&reason=done"),
    )
    .await
    .expect(StatusCode::SEE_OTHER);
    guest_from(&site.server.base, OTHER)
        .await
        .expect(StatusCode::CREATED);
    let after = page().await;
    assert!(
        after.contains("No IP ban in force") && after.contains("lifted "),
        "{}",
        after.text
    );
    let lifted = &admin.audited("ip_unban").await[0];
    assert_eq!(lifted["reason"], "done");
}
