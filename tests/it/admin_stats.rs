//! The admin's statistics and audit log over real HTTP: known answers per day and per hour for
//! logins, live sessions and recordings (events made over HTTP today and in the store at chosen
//! times), their CSV, the date range's refusals, the page's SVG charts with escaped labels, and
//! the audit page and CSV with filters.

use reqwest::header::COOKIE;
use reqwest::StatusCode;
use serde_json::{json, Value};

use roommanager::calendar::parse_date;
use roommanager::model::{LoginKind, RecordId, Session, TokenHash, UserId};
use roommanager::store::{unix_now, WatchDelta};

use crate::accounts::{guest_token, relaxed, send, verified_user, Reply};
use crate::admin::{admin_token, make_admin, ADMIN_PASSWORD};
use crate::common::{wait_for, TestServer};
use crate::records::list_recording;
use crate::rooms::{join, Site};

const DAY: u64 = 86_400;
const HOUR: u64 = 3_600;
/// The first day of the known answers (a Sunday long ago, so nothing of today lands in it).
const D1: &str = "2024-03-10";

fn d1() -> u64 {
    parse_date(D1).expect("a date") * DAY
}

async fn get_admin(server: &TestServer, path: &str, token: &str) -> Reply {
    send(server.client.get(server.url(path)).bearer_auth(token)).await
}

/// A page or CSV link as the admin's browser asks for it (the `rm_admin` cookie).
async fn get_page(server: &TestServer, path: &str, token: &str) -> Reply {
    send(
        server
            .client
            .get(server.url(path))
            .header(COOKIE, format!("rm_admin={token}")),
    )
    .await
}

/// Stores a login of `user` at `at`, as a login over HTTP does.
fn login_at(server: &TestServer, user: u64, at: u64, kind: LoginKind) {
    let session = Session {
        user_id: UserId(user),
        created_at: at,
        expires_at: at + DAY,
    };
    let hash = TokenHash(format!("stats-{user}-{at}"));
    server
        .app()
        .store
        .start_session(&hash, &session, kind, "127.0.0.1".to_owned())
        .expect("the login is stored");
}

fn assert_csv(reply: &Reply, body: &str) {
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("text/csv; charset=utf-8")
    );
    let disposition = reply.header("content-disposition").unwrap_or_default();
    assert!(
        disposition.starts_with("attachment; filename=\""),
        "{disposition}"
    );
    assert_eq!(reply.text, body);
}

#[tokio::test]
async fn logins_per_day_and_hour_have_known_answers() {
    let server = TestServer::start_with(relaxed).await;
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    // Today, over HTTP: two registrations with a login each, and a guest.
    let (ann, _) = verified_user(&server, "ann").await;
    let (bob, _) = verified_user(&server, "bob").await;
    guest_token(&server).await;
    // Chosen days, in the store: D1 09:05 a guest, 09:15 and 09:40 ann, 21:00 ann, 21:30 bob;
    // D1 + 2 00:30 bob.
    let guest = 999_999;
    login_at(&server, guest, d1() + 9 * HOUR + 300, LoginKind::Guest);
    for at in [9 * HOUR + 900, 9 * HOUR + 2400, 21 * HOUR] {
        login_at(&server, ann, d1() + at, LoginKind::Password);
    }
    login_at(&server, bob, d1() + 21 * HOUR + 1800, LoginKind::Password);
    login_at(&server, bob, d1() + 2 * DAY + 1800, LoginKind::Password);

    let range = "from=2024-03-10&to=2024-03-12";
    let report = get_admin(
        &server,
        &format!("/api/v1/admin/stats/logins?{range}"),
        &admin,
    )
    .await
    .expect(StatusCode::OK)
    .json();
    let day = |date: &str, logins: u64, unique: u64, guests: u64| {
        json!({"date": date, "logins": logins, "unique_users": unique, "guests": guests,
               "registrations": 0})
    };
    assert_eq!(
        report["days"],
        json!([
            day("2024-03-10", 4, 2, 1),
            day("2024-03-11", 0, 0, 0),
            day("2024-03-12", 1, 1, 0)
        ])
    );
    let hours = report["hours"].as_array().expect("hours");
    assert_eq!(hours.len(), 24);
    for (hour, entry) in hours.iter().enumerate() {
        let expected = match hour {
            0 => (1, 0),
            9 => (2, 1),
            21 => (2, 0),
            _ => (0, 0),
        };
        assert_eq!(
            (
                entry["hour"].as_u64(),
                entry["logins"].as_u64(),
                entry["guests"].as_u64()
            ),
            (Some(hour as u64), Some(expected.0), Some(expected.1)),
            "hour {hour}"
        );
    }

    // The default range: the last 30 days, ending today with today's HTTP events.
    let recent = get_admin(&server, "/api/v1/admin/stats/logins", &admin)
        .await
        .expect(StatusCode::OK)
        .json();
    let days = recent["days"].as_array().expect("days");
    assert_eq!(days.len(), 30);
    let today = roommanager::calendar::day_label(unix_now() / DAY);
    assert_eq!(
        days[29],
        json!({"date": today, "logins": 2, "unique_users": 2,
                                "guests": 1, "registrations": 2})
    );

    // The same days as CSV, from the API and from the page's link.
    let csv = "date,logins,unique_users,guests,registrations\r\n\
               2024-03-10,4,2,1,0\r\n2024-03-11,0,0,0,0\r\n2024-03-12,1,1,0,0\r\n";
    let reply = get_admin(
        &server,
        &format!("/api/v1/admin/stats/logins?{range}&format=csv"),
        &admin,
    )
    .await
    .expect(StatusCode::OK);
    assert_csv(&reply, csv);
    let reply = get_page(
        &server,
        &format!("/admin/stats/logins/csv?{range}&table=days"),
        &admin,
    )
    .await
    .expect(StatusCode::OK);
    assert_csv(&reply, csv);
    let hours_csv = get_admin(
        &server,
        &format!("/api/v1/admin/stats/logins?{range}&format=csv&table=hours"),
        &admin,
    )
    .await
    .expect(StatusCode::OK);
    assert!(hours_csv
        .text
        .starts_with("hour,logins,guests\r\n00,1,0\r\n01,0,0\r\n"));
    assert!(
        hours_csv.text.contains("\r\n09,2,1\r\n"),
        "{}",
        hours_csv.text
    );
}

#[tokio::test]
async fn live_sessions_and_recordings_have_known_answers_in_json_csv_and_the_page() {
    let server = TestServer::start_with(relaxed).await;
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let (host, _) = verified_user(&server, "hostess").await;
    let store = &server.app().store;
    let room = store
        .user(UserId(host))
        .expect("the store answers")
        .expect("the host exists")
        .room_id
        .expect("a verified host has a room");
    let nickname = store
        .user(UserId(host))
        .expect("the store answers")
        .expect("the host exists")
        .nickname;
    // D1 10:00–12:30, and D1 23:00 to D1 + 1 01:00 (an hour on each day).
    for (start, end) in [(10 * HOUR, 12 * HOUR + 1800), (23 * HOUR, 25 * HOUR)] {
        let session = store
            .start_live_session(
                room,
                UserId(host),
                "t".into(),
                format!("s{start}"),
                d1() + start,
            )
            .expect("a session");
        store
            .end_live_session(session.id, d1() + end)
            .expect("the session ends");
    }
    // Two recordings made long before (their sessions fall outside the range), watched in it.
    let before = d1() - 30 * DAY;
    let quoted = list_recording(&server, host, "Jazz, \"live\" night", before, 60, None).id;
    let script = list_recording(&server, host, "<script>alert(1)</script>", before, 60, None).id;
    let watch = |record: RecordId, viewer: u64, at: u64, watched_ms: u64| {
        let delta = WatchDelta {
            watched_ms,
            counted_at: Some(at),
            last_at: at,
        };
        store
            .add_watching(&[((record, UserId(viewer)), delta)])
            .expect("watching is stored");
    };
    // The sampler's peaks: 7 people at once on D1; a lower count later that day keeps the 7.
    assert!(store
        .raise_viewer_peak(7, d1() + 11 * HOUR)
        .expect("stored"));
    assert!(!store
        .raise_viewer_peak(5, d1() + 20 * HOUR)
        .expect("stored"));
    watch(quoted, 2, d1() + HOUR, 60_000);
    watch(quoted, 3, d1() + 2 * HOUR, 30_000);
    watch(script, 2, d1() + DAY + HOUR, 600_000);

    let range = "from=2024-03-10&to=2024-03-11";
    let lives = get_admin(
        &server,
        &format!("/api/v1/admin/stats/lives?{range}"),
        &admin,
    )
    .await
    .expect(StatusCode::OK)
    .json();
    assert_eq!(
        lives["days"],
        json!([
            {"date": "2024-03-10", "sessions": 2, "live_secs": 12_600, "hours_live": 3.5,
             "peak_viewers": 7},
            {"date": "2024-03-11", "sessions": 0, "live_secs": 3_600, "hours_live": 1.0,
             "peak_viewers": 0}
        ])
    );
    let reply = get_admin(
        &server,
        &format!("/api/v1/admin/stats/lives?{range}&format=csv"),
        &admin,
    )
    .await
    .expect(StatusCode::OK);
    assert_csv(
        &reply,
        "date,sessions,live_secs,hours_live,peak_viewers\r\n\
         2024-03-10,2,12600,3.50,7\r\n2024-03-11,0,3600,1.00,0\r\n",
    );

    let records = get_admin(
        &server,
        &format!("/api/v1/admin/stats/records?{range}"),
        &admin,
    )
    .await
    .expect(StatusCode::OK)
    .json();
    assert_eq!(
        records["days"],
        json!([
            {"date": "2024-03-10", "views": 2, "watch_secs": 90},
            {"date": "2024-03-11", "views": 1, "watch_secs": 600}
        ])
    );
    let top = |record: RecordId, title: &str, views: u64, watch_secs: u64| {
        json!({"record_id": record.0, "title": title, "host": nickname, "views": views,
               "watch_secs": watch_secs})
    };
    let quoted_top = top(quoted, "Jazz, \"live\" night", 2, 90);
    let script_top = top(script, "<script>alert(1)</script>", 1, 600);
    assert_eq!(records["top_by_views"], json!([quoted_top, script_top]));
    assert_eq!(
        records["top_by_watch_time"],
        json!([script_top, quoted_top])
    );
    let reply = get_admin(
        &server,
        &format!("/api/v1/admin/stats/records?{range}&format=csv&table=top_views"),
        &admin,
    )
    .await
    .expect(StatusCode::OK);
    assert_csv(
        &reply,
        &format!(
            "record_id,title,host,views,watch_secs\r\n\
             {},\"Jazz, \"\"live\"\" night\",{nickname},2,90\r\n\
             {},<script>alert(1)</script>,{nickname},1,600\r\n",
            quoted.0, script.0
        ),
    );

    // The page: one bar per day, every label escaped, a CSV link per table.
    let page = get_page(&server, &format!("/admin/stats?{range}"), &admin)
        .await
        .expect(StatusCode::OK);
    let chart = svg_titled(&page.text, "Logins per day (registered and guests)");
    assert_eq!(chart.matches("<rect class=\"bar\"").count(), 2, "{chart}");
    let sessions = svg_titled(&page.text, "Live sessions per day");
    assert!(
        sessions.contains("<title>2024-03-10: 2</title>"),
        "{sessions}"
    );
    let peaks = svg_titled(&page.text, "Peak viewers at once per day");
    assert!(peaks.contains("<title>2024-03-10: 7</title>"), "{peaks}");
    let top_chart = svg_titled(&page.text, "Top recordings by views");
    assert!(
        top_chart.contains("&lt;script&gt;alert(1)&lt;/script&gt;: 1"),
        "{top_chart}"
    );
    assert!(!page.text.contains("<script>alert"), "an unescaped title");
    assert!(
        !page.text.contains("style="),
        "the CSP forbids style attributes"
    );
    assert!(page.contains(
        "href=\"/admin/stats/records/csv?from=2024-03-10&#38;to=2024-03-11&#38;table=top_views\""
    ));
    let last_year = get_page(
        &server,
        "/admin/stats?from=2023-03-12&to=2024-03-11",
        &admin,
    )
    .await
    .expect(StatusCode::OK);
    let chart = svg_titled(&last_year.text, "Recording views per day");
    assert_eq!(chart.matches("<rect class=\"bar\"").count(), 366);
}

/// The sampler counts people in live rooms as they come and keeps the day's highest count after
/// they leave.
#[tokio::test]
async fn the_day_s_peak_of_viewers_is_sampled_from_live_rooms() {
    let site = Site::start_with(relaxed).await;
    let server = &site.server;
    make_admin(server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let today = roommanager::calendar::day_label(unix_now() / DAY);
    let peak_today = || async {
        let lives = get_admin(
            server,
            &format!("/api/v1/admin/stats/lives?from={today}&to={today}"),
            &admin,
        )
        .await
        .expect(StatusCode::OK)
        .json();
        lives["days"][0]["peak_viewers"]
            .as_u64()
            .expect("the day has a peak")
    };
    assert_eq!(peak_today().await, 0, "nobody has watched yet");

    let (mut host, room) = site.live_host("peakhost").await;
    let mut viewers = Vec::new();
    for _ in 0..2 {
        let mut viewer = site.ws(&site.guest().await).await;
        join(&mut viewer, room).await;
        viewers.push(viewer);
    }
    host.expect_where("audience", |m| m["count"] == 3).await;
    wait_for(|| async { (peak_today().await == 3).then_some(()) }).await;

    drop(viewers);
    host.expect_where("audience", |m| m["count"] == 1).await;
    wait_for(|| async {
        let audience = site.live_rooms().await[0]["audience"].as_u64();
        (audience == Some(1)).then_some(())
    })
    .await;
    // Long enough for the sampler to have counted the smaller audience.
    tokio::time::sleep(roommanager::stats::peaks::SAMPLE_EVERY * 2).await;
    assert_eq!(peak_today().await, 3, "the peak outlives the crowd");
}

/// The `<svg>` element whose `<title>` is `title`.
fn svg_titled<'a>(page: &'a str, title: &str) -> &'a str {
    let marker = format!("<title>{title}</title>");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("a chart {title:?}"));
    let start = page[..at].rfind("<svg").expect("the chart's start");
    let end = at + page[at..].find("</svg>").expect("the chart's end");
    &page[start..end]
}

#[tokio::test]
async fn bad_ranges_and_strangers_are_refused_and_a_good_request_still_answered() {
    let server = TestServer::start_with(relaxed).await;
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let (_, user) = verified_user(&server, "carol").await;
    let refusals = [
        (
            "logins?from=2024-02-30",
            StatusCode::BAD_REQUEST,
            "invalid_date",
        ),
        (
            "logins?to=yesterday",
            StatusCode::BAD_REQUEST,
            "invalid_date",
        ),
        (
            "lives?from=2024-03-10&to=2024-03-09",
            StatusCode::BAD_REQUEST,
            "invalid_range",
        ),
        (
            "records?from=2020-01-01&to=2023-01-03",
            StatusCode::BAD_REQUEST,
            "range_too_long",
        ),
        (
            "logins?format=xml",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "logins?format=csv&table=nope",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        ("viewers", StatusCode::NOT_FOUND, "not_found"),
    ];
    let giant = format!("logins?from={}", "9".repeat(4_000));
    for (query, status, code) in
        refusals
            .iter()
            .copied()
            .chain([(giant.as_str(), StatusCode::BAD_REQUEST, "invalid_date")])
    {
        get_admin(&server, &format!("/api/v1/admin/stats/{query}"), &admin)
            .await
            .expect_error(status, code);
    }
    // Three years is the longest range.
    let longest = get_admin(
        &server,
        "/api/v1/admin/stats/records?from=2020-01-01&to=2023-01-02",
        &admin,
    )
    .await
    .expect(StatusCode::OK)
    .json();
    assert_eq!(longest["days"].as_array().map(Vec::len), Some(3 * 366));
    // A user's token is no admin's, for the JSON and the CSV alike.
    get_admin(&server, "/api/v1/admin/stats/logins?format=csv", &user)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "admin_required");
    let page = send(
        crate::web_hardening::no_redirects()
            .get(server.url("/admin/stats/logins/csv"))
            .header(COOKIE, format!("rm_session={user}; rm_admin={user}")),
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    // A bad range on the page is a page saying why.
    let bad = get_page(
        &server,
        "/admin/stats?from=2024-03-10&to=2024-03-01",
        &admin,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.contains("is after"), "{}", bad.text);
}

#[tokio::test]
async fn the_audit_log_filters_pages_and_exports() {
    let server = TestServer::start_with(relaxed).await;
    make_admin(&server, "root");
    make_admin(&server, "second");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let (host, _) = verified_user(&server, "hostess").await;
    let record = list_recording(&server, host, "Spam", unix_now() - DAY, 60, None).id;
    send(
        server
            .client
            .delete(server.url(&format!(
                "/api/v1/records/{}?reason=spam%2C%20%22twice%22",
                record.0
            )))
            .bearer_auth(&admin),
    )
    .await
    .expect(StatusCode::NO_CONTENT);

    let list = |query: &'static str| {
        let (server, admin) = (&server, &admin);
        async move {
            get_admin(server, &format!("/api/v1/admin/audit{query}"), admin)
                .await
                .expect(StatusCode::OK)
                .json()
        }
    };
    let actions = |body: &Value| -> Vec<String> {
        body["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["admin"].as_str().unwrap_or(""),
                    e["action"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    let all = list("").await;
    assert_eq!(
        actions(&all),
        ["root delete_record", "cli create_admin", "cli create_admin"]
    );
    assert_eq!(
        actions(&list("?action=delete_record").await),
        ["root delete_record"]
    );
    assert_eq!(actions(&list("?admin=CLI").await).len(), 2);
    assert_eq!(list("?from=2001-01-01&to=2001-12-31").await["total"], 0);
    let paged = list("?per_page=1&page=2").await;
    assert_eq!(
        (actions(&paged).len(), paged["total"].as_u64()),
        (1, Some(3))
    );
    get_admin(
        &server,
        "/api/v1/admin/audit?from=2024-01-02&to=2024-01-01",
        &admin,
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_range");

    // CSV: every entry the filter admits, the reason quoted.
    let entry = &all["entries"][0];
    let at = entry["at"].as_u64().expect("at");
    let ip = entry["ip"].as_str().expect("ip");
    let reply = get_admin(
        &server,
        "/api/v1/admin/audit?action=delete_record&format=csv",
        &admin,
    )
    .await
    .expect(StatusCode::OK);
    let secs = at % DAY;
    let time = format!(
        "{} {:02}:{:02}:{:02}",
        roommanager::calendar::day_label(at / DAY),
        secs / HOUR,
        secs / 60 % 60,
        secs % 60
    );
    assert_csv(
        &reply,
        &format!(
            "at,time,admin,action,target,reason,ip\r\n\
             {at},{time},root,delete_record,record:{},\"spam, \"\"twice\"\"\",{ip}\r\n",
            record.0
        ),
    );
    let page_csv = get_page(&server, "/admin/audit/csv?action=delete_record", &admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(page_csv.text, reply.text);

    // The page: filtered rows, paging links, the CSV link with the same filters.
    let page = get_page(&server, "/admin/audit?admin=cli&per_page=1", &admin)
        .await
        .expect(StatusCode::OK);
    assert!(page.contains("create_admin"), "{}", page.text);
    assert!(!page.contains("<td>delete_record</td>"), "{}", page.text);
    assert!(page.contains("2 entries"), "{}", page.text);
    assert!(page.contains("href=\"/admin/audit/csv?admin=cli&#38;action=&#38;from=&#38;to=\""));
    assert!(
        page.contains("&amp;page=2&amp;per_page=1\">Older</a>"),
        "{}",
        page.text
    );
    let nav = get_page(&server, "/admin", &admin)
        .await
        .expect(StatusCode::OK);
    assert!(
        nav.contains("<a href=\"/admin/stats\">Statistics</a>"),
        "{}",
        nav.text
    );
    assert!(
        nav.contains("<a href=\"/admin/audit\">Audit</a>"),
        "{}",
        nav.text
    );
}
