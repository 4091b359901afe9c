//! Watch statistics of recordings: views once per window, heartbeats capped by real time and by
//! the player's progress, the host's figures, the limits on open views, batched writes, and
//! nothing acknowledged lost at shutdown.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use roommanager::config::Config;
use roommanager::model::RecordId;
use roommanager::store::unix_now;

use crate::accounts::{guest_token, relaxed, send, verified_user, Reply};
use crate::common::{wait_for, TestServer};
use crate::connections::metric;
use crate::records::listed;

async fn post(server: &TestServer, path: &str, token: &str, body: Option<Value>) -> Reply {
    let request = server.client.post(server.url(path)).bearer_auth(token);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    send(request).await
}

async fn start_view(server: &TestServer, record: u64, token: &str) -> String {
    let reply = post(
        server,
        &format!("/api/v1/records/{record}/watch"),
        token,
        None,
    )
    .await
    .expect(StatusCode::OK);
    reply.json()["view_id"]
        .as_str()
        .expect("view_id")
        .to_owned()
}

async fn beat(
    server: &TestServer,
    record: u64,
    view: &str,
    token: &str,
    position_ms: u64,
) -> Reply {
    post(
        server,
        &format!("/api/v1/records/{record}/watch/{view}"),
        token,
        Some(json!({ "position_ms": position_ms })),
    )
    .await
}

async fn watched(server: &TestServer, record: u64, view: &str, token: &str, at: u64) -> u64 {
    beat(server, record, view, token, at)
        .await
        .expect(StatusCode::OK)
        .json()["watched_secs"]
        .as_u64()
        .expect("watched_secs")
}

async fn stats(server: &TestServer, record: u64, token: &str) -> Reply {
    send(
        server
            .client
            .get(server.url(&format!("/api/v1/records/{record}/stats")))
            .bearer_auth(token),
    )
    .await
}

/// The statistics the host sees.
async fn stats_of(server: &TestServer, record: u64, token: &str) -> Value {
    stats(server, record, token)
        .await
        .expect(StatusCode::OK)
        .json()
}

/// Waits until at least `ms` milliseconds passed since `since`.
async fn at_least(since: Instant, ms: u64) {
    let target = since + Duration::from_millis(ms);
    tokio::time::sleep_until(target.into()).await;
}

#[tokio::test]
async fn statistics_add_up_to_a_known_answer() {
    let server = TestServer::start_with(relaxed).await;
    let (host, host_token) = verified_user(&server, "wshost").await;
    let (alice, alice_token) = verified_user(&server, "wsalice").await;
    let guest = guest_token(&server).await;
    let record = listed(&server, host, "Friday live", unix_now(), 600);

    // Alice watches 1.5 s, then 1.5 s more; a second view (a reload) does not count again.
    let began = Instant::now();
    let view = start_view(&server, record, &alice_token).await;
    at_least(began, 1600).await;
    assert_eq!(watched(&server, record, &view, &alice_token, 1500).await, 1);
    let again = Instant::now();
    at_least(again, 1600).await;
    assert_eq!(watched(&server, record, &view, &alice_token, 3000).await, 3);
    let reload = start_view(&server, record, &alice_token).await;
    assert_ne!(reload, view);
    // The guest watches 1.2 s.
    let began = Instant::now();
    let guest_view = start_view(&server, record, &guest).await;
    at_least(began, 1300).await;
    assert_eq!(watched(&server, record, &guest_view, &guest, 1200).await, 1);

    let body = stats_of(&server, record, &host_token).await;
    assert_eq!(body["views"], 2, "{body}");
    assert_eq!(body["unique_viewers"], 2, "{body}");
    // 3000 ms + 1200 ms.
    assert_eq!(body["watch_secs_total"], 4, "{body}");
    assert_eq!(body["watch_secs_avg"], 2, "{body}");
    assert_eq!(body["viewers_total"], 2, "{body}");
    let viewers = body["viewers"].as_array().expect("viewers");
    let alice_row = viewers
        .iter()
        .find(|v| v["user_id"] == alice)
        .expect("alice is listed");
    assert_eq!(alice_row["nickname"], "wsalice");
    assert_eq!(alice_row["watched_secs"], 3);
    assert_eq!(alice_row["views"], 1);
    let guest_row = viewers
        .iter()
        .find(|v| v["user_id"] != alice)
        .expect("the guest is listed");
    assert_eq!(guest_row["watched_secs"], 1);
    assert!(guest_row["nickname"]
        .as_str()
        .is_some_and(|n| !n.is_empty()));
    let today = roommanager::calendar::day_label(unix_now() / 86_400);
    assert_eq!(body["views_per_day"], json!([{"day": today, "views": 2}]));

    // The catalogue's record shows the same totals.
    let row = server
        .app()
        .store
        .watch_stats(RecordId(record))
        .unwrap()
        .expect("the record")
        .record;
    assert_eq!((row.views, row.watch_secs_total), (2, 4));
}

#[tokio::test]
async fn a_heartbeat_cannot_claim_more_time_than_passed() {
    let server = TestServer::start_with(relaxed).await;
    let (host, host_token) = verified_user(&server, "caphost").await;
    let (_, viewer) = verified_user(&server, "capviewer").await;
    let record = listed(&server, host, "Long", unix_now(), 7200);
    let began = Instant::now();
    let view = start_view(&server, record, &viewer).await;
    at_least(began, 1100).await;
    // One hour claimed after about a second: at most the real time counts.
    let claimed = watched(&server, record, &view, &viewer, 3_600_000).await;
    let elapsed = began.elapsed().as_secs();
    assert!(
        (1..=elapsed).contains(&claimed),
        "{claimed} s after {elapsed} s"
    );
    // At once again, an hour further: nothing real passed, nothing is added.
    let again = watched(&server, record, &view, &viewer, 7_200_000).await;
    assert!(again <= began.elapsed().as_secs(), "{again} s");
    // A paused player (same position) adds nothing, however long it waits.
    let paused = Instant::now();
    at_least(paused, 1100).await;
    assert_eq!(
        watched(&server, record, &view, &viewer, 7_200_000).await,
        again
    );
    // After a seek back, real time still bounds what counts.
    let seek = Instant::now();
    let back = watched(&server, record, &view, &viewer, 0).await;
    assert!(back <= again + seek.elapsed().as_secs() + 1, "{back} s");
    let body = stats_of(&server, record, &host_token).await;
    assert!(body["watch_secs_total"].as_u64().unwrap() <= began.elapsed().as_secs());
}

#[tokio::test]
async fn several_tabs_of_one_viewer_earn_no_more_than_the_real_time() {
    let server = TestServer::start_with(relaxed).await;
    let (host, host_token) = verified_user(&server, "tabhost").await;
    let (_, viewer) = verified_user(&server, "tabviewer").await;
    let record = listed(&server, host, "Tabs", unix_now(), 600);
    let began = Instant::now();
    let mut views = Vec::new();
    for _ in 0..6 {
        views.push(start_view(&server, record, &viewer).await);
    }
    at_least(began, 1600).await;
    // Every tab claims the 1.5 s that passed; together they get those 1.5 s once.
    for view in &views {
        beat(&server, record, view, &viewer, 1500)
            .await
            .expect(StatusCode::OK);
    }
    let after = began.elapsed().as_millis() as u64;
    let body = stats_of(&server, record, &host_token).await;
    let watched = body["viewers"][0]["watched_secs"]
        .as_u64()
        .expect("watched");
    assert!(
        watched * 1000 <= after,
        "{watched} s credited in {after} ms"
    );
    assert_eq!(watched, 1, "{body}");
    assert_eq!(body["views"], 1, "{body}");
}

#[tokio::test]
async fn views_count_again_once_the_window_passed() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.records.view_window_secs = 1;
    })
    .await;
    let (host, host_token) = verified_user(&server, "winhost").await;
    let (_, viewer) = verified_user(&server, "winviewer").await;
    let record = listed(&server, host, "Window", unix_now(), 60);
    start_view(&server, record, &viewer).await;
    let first = unix_now();
    // Two seconds on (whole seconds, so the window of 1 s has passed whatever the rounding).
    while unix_now() < first + 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start_view(&server, record, &viewer).await;
    let body = stats_of(&server, record, &host_token).await;
    assert_eq!(
        (body["views"].as_u64(), body["unique_viewers"].as_u64()),
        (Some(2), Some(1))
    );
}

#[tokio::test]
async fn views_and_statistics_refuse_what_is_not_theirs() {
    let server = TestServer::start_with(relaxed).await;
    let (host, host_token) = verified_user(&server, "ownhost").await;
    let (_, alice) = verified_user(&server, "ownalice").await;
    let (_, bob) = verified_user(&server, "ownbob").await;
    let guest = guest_token(&server).await;
    let record = listed(&server, host, "Mine", unix_now(), 60);

    post(&server, "/api/v1/records/999999/watch", &alice, None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "record_not_found");
    let anonymous = send(
        server
            .client
            .post(server.url(&format!("/api/v1/records/{record}/watch")))
            .header("x-rm-csrf", "1"),
    )
    .await;
    assert_eq!(
        anonymous.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        anonymous.text
    );

    let view = start_view(&server, record, &alice).await;
    // Bob cannot heartbeat Alice's view, nor a made-up one, nor hers under another record.
    beat(&server, record, &view, &bob, 1000)
        .await
        .expect_error(StatusCode::NOT_FOUND, "view_not_found");
    beat(&server, record, &"0".repeat(32), &alice, 1000)
        .await
        .expect_error(StatusCode::NOT_FOUND, "view_not_found");
    let other = listed(&server, host, "Other", unix_now(), 60);
    beat(&server, other, &view, &alice, 1000)
        .await
        .expect_error(StatusCode::NOT_FOUND, "view_not_found");
    // Bodies that are not a position.
    for bad in [
        json!({}),
        json!({"position_ms": -5}),
        json!({"position_ms": "soon"}),
    ] {
        post(
            &server,
            &format!("/api/v1/records/{record}/watch/{view}"),
            &alice,
            Some(bad),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_json");
    }
    // Only the host sees the statistics.
    for token in [&alice, &guest] {
        stats(&server, record, token)
            .await
            .expect_error(StatusCode::FORBIDDEN, "not_your_record");
    }
    stats(&server, 999_999, &host_token)
        .await
        .expect_error(StatusCode::NOT_FOUND, "record_not_found");
    let paging = send(
        server
            .client
            .get(server.url(&format!("/api/v1/records/{record}/stats?per_page=501")))
            .bearer_auth(&host_token),
    )
    .await;
    paging.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    assert_eq!(watched(&server, record, &view, &alice, 0).await, 0);
}

#[tokio::test]
async fn open_views_are_bounded_per_viewer_and_in_all() {
    let server = TestServer::start_with(|c: &mut Config| {
        relaxed(c);
        c.records.max_views_per_viewer = 2;
        c.records.max_open_views = 4;
    })
    .await;
    let (host, host_token) = verified_user(&server, "caphost2").await;
    let (_, flooder) = verified_user(&server, "flooder").await;
    let record = listed(&server, host, "Popular", unix_now(), 60);

    // A flood of views from one viewer keeps only the newest two open, and counts one view.
    let mut views = Vec::new();
    for _ in 0..50 {
        views.push(start_view(&server, record, &flooder).await);
    }
    assert_eq!(metric(&server, "roommanager_record_views_open").await, 2);
    beat(&server, record, &views[47], &flooder, 0)
        .await
        .expect_error(StatusCode::NOT_FOUND, "view_not_found");
    for newest in &views[48..] {
        beat(&server, record, newest, &flooder, 0)
            .await
            .expect(StatusCode::OK);
    }
    // Two more viewers fill the server; a fifth view is refused, the open ones carry on.
    let first = guest_token(&server).await;
    let second = guest_token(&server).await;
    let kept = start_view(&server, record, &first).await;
    start_view(&server, record, &second).await;
    let late = guest_token(&server).await;
    post(
        &server,
        &format!("/api/v1/records/{record}/watch"),
        &late,
        None,
    )
    .await
    .expect_error(StatusCode::SERVICE_UNAVAILABLE, "too_many_views");
    beat(&server, record, &kept, &first, 0)
        .await
        .expect(StatusCode::OK);
    let body = stats_of(&server, record, &host_token).await;
    assert_eq!(body["views"], 3, "{body}");
}

#[tokio::test]
async fn heartbeats_are_written_in_batches_not_one_by_one() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.records.watch_flush_ms = 1000;
    })
    .await;
    let (host, _) = verified_user(&server, "batchhost").await;
    let record = listed(&server, host, "Busy", unix_now(), 600);
    let mut viewers = Vec::new();
    for _ in 0..20 {
        let token = guest_token(&server).await;
        let view = start_view(&server, record, &token).await;
        viewers.push((token, view));
    }
    let writes_before = metric(&server, "roommanager_record_watch_writes_total").await;
    let began = Instant::now();
    for round in 1..=10u64 {
        for (token, view) in &viewers {
            beat(&server, record, view, token, round * 10)
                .await
                .expect(StatusCode::OK);
        }
    }
    let seconds = began.elapsed().as_secs();
    let writes = metric(&server, "roommanager_record_watch_writes_total").await - writes_before;
    assert!(metric(&server, "roommanager_record_heartbeats_total").await >= 200);
    // One write per flush interval at most (plus the one under way), not 200.
    assert!(writes <= seconds + 2, "{writes} writes in {seconds} s");
    // And the views reach the store without anybody asking for the statistics.
    wait_for(|| async {
        let row = server
            .app()
            .store
            .watch_stats(RecordId(record))
            .unwrap()?
            .record;
        (row.views == 20 && row.unique_viewers == 20).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_full_buffer_is_written_before_its_interval() {
    let server = TestServer::start_with(|c| {
        relaxed(c);
        c.records.watch_flush_ms = 60_000;
        c.records.watch_flush_batch = 5;
    })
    .await;
    let (host, _) = verified_user(&server, "fullhost").await;
    let record = listed(&server, host, "Full", unix_now(), 600);
    for _ in 0..5 {
        let token = guest_token(&server).await;
        start_view(&server, record, &token).await;
    }
    wait_for(|| async {
        let row = server
            .app()
            .store
            .watch_stats(RecordId(record))
            .unwrap()?
            .record;
        (row.views == 5).then_some(())
    })
    .await;
}

#[tokio::test]
async fn acknowledged_heartbeats_survive_a_graceful_shutdown() {
    let slow_writes = |c: &mut Config| {
        relaxed(c);
        c.records.watch_flush_ms = 60_000;
    };
    let server = TestServer::start_with(slow_writes).await;
    let (host, host_token) = verified_user(&server, "stophost").await;
    let (_, viewer) = verified_user(&server, "stopviewer").await;
    let record = listed(&server, host, "Last words", unix_now(), 600);
    let began = Instant::now();
    let view = start_view(&server, record, &viewer).await;
    at_least(began, 2100).await;
    assert_eq!(watched(&server, record, &view, &viewer, 2000).await, 2);
    let data = server.stop_keep_data().await;

    let server = TestServer::start_in(data, slow_writes).await;
    let body = stats_of(&server, record, &host_token).await;
    assert_eq!(
        (body["views"].as_u64(), body["watch_secs_total"].as_u64()),
        (Some(1), Some(2))
    );
}
