//! The admin pages' forms over real HTTP, as a browser without JavaScript sends them: a ban
//! from the user page (a preset and a date) reaches a member in a running room at once and its
//! lift lets them chat again; the live rooms page lists a room and its close form closes it with
//! the reason its members see; the recordings page searches and its delete form removes a
//! record; forms without their CSRF token and bad ban fields are refused. Each action is in the
//! audit log.

use reqwest::header::COOKIE;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::accounts::{get_auth, relaxed, send, Reply};
use crate::admin::{admin_token, audit, make_admin, ADMIN_PASSWORD};
use crate::common::wait_for;
use crate::common::ws::WsClient;
use crate::records::list_recording;
use crate::rooms::{join, Site};
use crate::web_hardening::{form_token, post_form_at};
use roommanager::store::unix_now;

/// An admin signed in as a browser is: the `rm_admin` cookie.
struct AdminBrowser {
    base: String,
    token: String,
}

impl AdminBrowser {
    async fn of(site: &Site) -> AdminBrowser {
        make_admin(&site.server, "root");
        let base = site.server.base.clone();
        let token = admin_token(&base, "root", ADMIN_PASSWORD).await;
        AdminBrowser { base, token }
    }

    fn cookie(&self) -> String {
        format!("rm_admin={}", self.token)
    }

    async fn page(&self, path: &str) -> Reply {
        send(
            reqwest::Client::new()
                .get(format!("{}{path}", self.base))
                .header(COOKIE, self.cookie()),
        )
        .await
        .expect(StatusCode::OK)
    }

    /// Posts a form of the page at `from` (with that page's CSRF token) to `to`.
    async fn submit(&self, from: &str, to: &str, fields: &str) -> Reply {
        let csrf = form_token(&self.page(from).await.text);
        let url = format!("{}{to}", self.base);
        post_form_at(url, &self.cookie(), &format!("csrf={csrf}&{fields}")).await
    }

    /// The newest audit entry.
    async fn last_audit(&self) -> Value {
        audit(&self.base, &self.token, "").await["entries"][0].clone()
    }
}

#[track_caller]
fn redirected_to(reply: &Reply, to: &str) {
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert_eq!(reply.header("location").as_deref(), Some(to));
}

/// The `until` (unix seconds) of the user's ban in force of `scope`, from the admin API.
async fn ban_until(site: &Site, admin: &AdminBrowser, user: u64, scope: &str) -> Option<u64> {
    let detail = get_auth(
        &site.server,
        &format!("/api/v1/admin/users/{user}"),
        &admin.token,
    )
    .await
    .expect(StatusCode::OK)
    .json();
    let ban = detail["bans"]
        .as_array()
        .expect("bans")
        .iter()
        .find(|b| b["scope"] == scope && b["in_force"] == true)
        .cloned()
        .unwrap_or_else(|| panic!("a {scope} ban in force in {detail}"));
    ban["until"].as_u64()
}

async fn danmaku_passes(from: &mut WsClient, host: &mut WsClient, text: &str) {
    from.send(json!({"type": "danmaku", "text": text})).await;
    host.expect_where("danmaku", |m| m["text"] == text).await;
}

#[tokio::test]
async fn a_ban_from_the_user_page_bites_in_a_running_room_and_its_lift_undoes_it() {
    let site = Site::start_with(relaxed).await;
    let admin = AdminBrowser::of(&site).await;
    let (mut host, room) = site.live_host("phost1").await;
    let (fan, fan_token) = site.user("pfan1").await;
    let mut member = site.ws(&fan_token).await;
    join(&mut member, room).await;
    danmaku_passes(&mut member, &mut host, "before").await;

    let user_page = format!("/admin/users/{fan}");
    let bans = format!("/admin/users/{fan}/bans");
    // Without its CSRF token the form is refused, and nothing happens.
    let forged = post_form_at(
        format!("{}{bans}", admin.base),
        &admin.cookie(),
        "scope=chat&reason=spam&expiry=1d",
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    danmaku_passes(&mut member, &mut host, "not banned by a forgery").await;

    // The 1-day preset: the member is told at once and the next danmaku is refused.
    let before = unix_now();
    let done = admin
        .submit(
            &user_page,
            &bans,
            "scope=chat&reason=spam+links&expiry=1d&date=",
        )
        .await;
    redirected_to(&done, &format!("{user_page}?notice=banned"));
    let told = member.expect("banned").await;
    assert_eq!(
        (&told["scope"], &told["reason"]),
        (&json!("chat"), &json!("spam links"))
    );
    let until = ban_until(&site, &admin, fan, "chat").await.expect("an end");
    assert!(
        (before + 86_400..=unix_now() + 86_400).contains(&until),
        "until {until} is a day from {before}"
    );
    assert_eq!(told["until"], until);
    member
        .send(json!({"type": "danmaku", "text": "still here"}))
        .await;
    assert_eq!(member.expect_error("danmaku").await, "chat_banned");

    // The page shows it at once: the notice, the ban in force with its end, a lift button.
    let shown = admin.page(&format!("{user_page}?notice=banned")).await;
    for text in [
        "Banned: the ban applies at once",
        "spam links",
        &format!("data-until=\"{until}\""),
        "in force",
        &format!("action=\"/admin/users/{fan}/bans/chat/lift\""),
    ] {
        assert!(shown.text.contains(text), "{text} not in:\n{}", shown.text);
    }
    let listed = admin.page("/admin/users?filter=banned").await;
    assert!(
        listed
            .text
            .contains("<span class=\"badge banned\">banned: chat until "),
        "{}",
        listed.text
    );
    assert_eq!(admin.last_audit().await["action"], "ban");

    // Lift by the form: `unbanned`, and the member chats again without rejoining.
    let lift = format!("/admin/users/{fan}/bans/chat/lift");
    let lifted = admin.submit(&user_page, &lift, "reason=appeal").await;
    redirected_to(&lifted, &format!("{user_page}?notice=lifted"));
    assert_eq!(member.expect("unbanned").await["scope"], "chat");
    danmaku_passes(&mut member, &mut host, "back again").await;
    let entry = admin.last_audit().await;
    assert_eq!(
        (&entry["action"], &entry["target"], &entry["reason"]),
        (
            &json!("unban"),
            &json!(format!("user:{fan}:chat")),
            &json!("appeal")
        )
    );
    // Nothing left to lift.
    let again = admin.submit(&user_page, &lift, "reason=").await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text);
}

#[tokio::test]
async fn a_ban_until_a_date_ends_with_that_day_and_bad_fields_are_refused() {
    let site = Site::start_with(relaxed).await;
    let admin = AdminBrowser::of(&site).await;
    let (user, _) = site.user("pdate1").await;
    let user_page = format!("/admin/users/{user}");
    let bans = format!("/admin/users/{user}/bans");

    // A date in the past, a malformed one, a date with a preset, an unknown preset or scope, no
    // reason, a reason too long: each refused with its reason, and no ban is given.
    let long = "x".repeat(501);
    for (fields, status, says) in [
        (
            "scope=stream&reason=r&expiry=date&date=2001-01-01",
            400,
            "must be in the future",
        ),
        (
            "scope=stream&reason=r&expiry=date&date=01%2F02%2F2099",
            400,
            "YYYY-MM-DD",
        ),
        ("scope=stream&reason=r&expiry=date&date=", 400, "YYYY-MM-DD"),
        (
            "scope=stream&reason=r&expiry=7d&date=2099-01-01",
            400,
            "clear the date",
        ),
        ("scope=stream&reason=r&expiry=1y", 400, "1h, 1d, 7d"),
        (
            "scope=everything&reason=r&expiry=1d",
            400,
            "chat` or `stream",
        ),
        ("scope=stream&reason=+&expiry=1d", 400, "give a reason"),
        (
            &format!("scope=stream&reason={long}&expiry=1d"),
            400,
            "at most 500",
        ),
    ] {
        let refused = admin.submit(&user_page, &bans, fields).await;
        assert_eq!(
            refused.status.as_u16(),
            status,
            "{fields}: {}",
            refused.text
        );
        assert!(refused.contains(says), "{fields}: {}", refused.text);
    }
    let page = admin.page(&user_page).await;
    assert!(page.contains("Never banned."), "{}", page.text);

    // 2099-12-31 ends at 2100-01-01 00:00:00 UTC.
    let done = admin
        .submit(
            &user_page,
            &bans,
            "scope=stream&reason=later&expiry=date&date=2099-12-31",
        )
        .await;
    redirected_to(&done, &format!("{user_page}?notice=banned"));
    assert_eq!(
        ban_until(&site, &admin, user, "stream").await,
        Some(4_102_444_800)
    );
    // Permanent: no end.
    let done = admin
        .submit(
            &user_page,
            &bans,
            "scope=chat&reason=for+good&expiry=permanent",
        )
        .await;
    redirected_to(&done, &format!("{user_page}?notice=banned"));
    assert_eq!(ban_until(&site, &admin, user, "chat").await, None);
    let page = admin.page(&user_page).await;
    assert!(
        page.contains("until lifted") && page.contains("2100-01-01 00:00:00"),
        "{}",
        page.text
    );
}

#[tokio::test]
async fn the_rooms_page_lists_a_live_room_and_its_form_closes_it_with_the_reason() {
    let site = Site::start_with(relaxed).await;
    let admin = AdminBrowser::of(&site).await;
    let empty = admin.page("/admin/rooms").await;
    assert!(empty.contains("No room is live."), "{}", empty.text);

    let (mut host, room) = site.live_host("prhost1").await;
    let (_, fan_token) = site.user("prfan1").await;
    let mut fan = site.ws(&fan_token).await;
    join(&mut fan, room).await;

    // The audience follows the join within a tick.
    let listed = wait_for(|| async {
        let page = admin.page("/admin/rooms").await;
        page.text.contains("<td>2</td>").then_some(page)
    })
    .await;
    for text in [
        &format!("id=\"room-{room}\""),
        "Friday jam",
        "1 live now",
        &format!("action=\"/admin/rooms/{room}/close\""),
    ] {
        assert!(
            listed.text.contains(text),
            "{text} not in:\n{}",
            listed.text
        );
    }
    assert!(listed
        .text
        .contains("href=\"/admin/rooms\" aria-current=\"page\""));

    let close = format!("/admin/rooms/{room}/close");
    let forged = post_form_at(
        format!("{}{close}", admin.base),
        &admin.cookie(),
        "reason=maintenance",
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    let no_reason = admin.submit("/admin/rooms", &close, "reason=").await;
    assert_eq!(
        no_reason.status,
        StatusCode::BAD_REQUEST,
        "{}",
        no_reason.text
    );

    let done = admin
        .submit("/admin/rooms", &close, "reason=scheduled+maintenance")
        .await;
    redirected_to(&done, "/admin/rooms?notice=closed");
    for member in [&mut fan, &mut host] {
        assert_eq!(
            member.expect("room_closed").await["reason"],
            "scheduled maintenance"
        );
    }
    let after = admin.page("/admin/rooms?notice=closed").await;
    assert!(
        after.contains("No room is live.") && after.contains("Closed:"),
        "{}",
        after.text
    );
    assert!(site.live_rooms().await.is_empty());
    let entry = admin.last_audit().await;
    assert_eq!(
        (&entry["action"], &entry["target"]),
        (&json!("close_room"), &json!(format!("room:{room}")))
    );
    // A room that is not open: refused.
    let again = admin.submit("/admin/rooms", &close, "reason=again").await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text);
}

#[tokio::test]
async fn the_recordings_page_searches_sorts_pages_and_its_form_deletes() {
    let site = Site::start_with(relaxed).await;
    let admin = AdminBrowser::of(&site).await;
    let (ann, _) = site.user("prec1").await;
    let now = unix_now();
    let keep = list_recording(&site.server, ann, "周五 jam session", now - 300, 3725, None);
    let gone = list_recording(&site.server, ann, "Old talk", now - 600, 60, None);
    list_recording(&site.server, ann, "Third", now - 900, 10, None);

    let all = admin.page("/admin/records").await;
    for text in [
        "3 recordings",
        "周五 jam session",
        "1:02:05",
        "Old talk",
        "prec1",
    ] {
        assert!(all.text.contains(text), "{text} not in:\n{}", all.text);
    }
    let found = admin.page("/admin/records?q=%E5%91%A8%E4%BA%94").await;
    assert!(
        found.contains("<p>1 recording</p>") && !found.contains("Old talk"),
        "{}",
        found.text
    );
    let longest = admin.page("/admin/records?sort=longest&per_page=1").await;
    assert!(
        longest.contains("周五 jam session") && !longest.contains("Third"),
        "{}",
        longest.text
    );
    assert!(
        longest
            .text
            .contains("sort=longest&amp;page=2&amp;per_page=1"),
        "{}",
        longest.text
    );
    send(
        reqwest::Client::new()
            .get(format!("{}/admin/records?sort=loudest", admin.base))
            .header(COOKIE, admin.cookie()),
    )
    .await
    .expect(StatusCode::BAD_REQUEST);

    let delete = format!("/admin/records/{}/delete", gone.id);
    let forged = post_form_at(
        format!("{}{delete}", admin.base),
        &admin.cookie(),
        "reason=x",
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    let done = admin
        .submit("/admin/records", &delete, "reason=off+topic")
        .await;
    redirected_to(&done, "/admin/records?notice=deleted");
    let after = admin.page("/admin/records?notice=deleted").await;
    assert!(
        after.contains("2 recordings") && !after.contains("Old talk"),
        "{}",
        after.text
    );
    assert!(after.contains(&format!("id=\"record-{}\"", keep.id)));
    let record = site
        .server
        .get(&format!("/api/v1/records/{}", gone.id))
        .await;
    assert_eq!(record.status(), StatusCode::NOT_FOUND);
    let entry = admin.last_audit().await;
    assert_eq!(
        (&entry["action"], &entry["target"], &entry["reason"]),
        (
            &json!("delete_record"),
            &json!(format!("record:{}", gone.id)),
            &json!("off topic")
        )
    );
    let again = admin.submit("/admin/records", &delete, "reason=").await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text);
}
