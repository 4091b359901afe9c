//! A busy room merges the events of a tick (`rooms.coalesce_ms`) into one frame, a JSON array:
//! every member still gets each event of its time in the room exactly once and in order, a
//! quiet room sends single objects, and 0 turns merging off.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::ws::WsClient;
use crate::common::{run_command, write_file};
use crate::rooms::{join, Site};

/// Danmaku each flooding sender sends.
const PER_SENDER: usize = 400;

/// A registered member of the room, with everything it received in order.
struct Viewer {
    user_id: u64,
    ws: WsClient,
    log: Vec<Value>,
}

impl Viewer {
    async fn new(site: &Site, name: &str) -> Viewer {
        let (user_id, token) = site.user(name).await;
        Viewer {
            user_id,
            ws: site.ws(&token).await,
            log: Vec::new(),
        }
    }

    /// Joins `room`; the `room_info` goes into the log, in its place among the danmaku.
    async fn join(&mut self, room: u64) {
        let infos = |log: &[Value]| log.iter().filter(|m| m["type"] == "room_info").count();
        let before = infos(&self.log);
        self.ws
            .send(json!({"type": "join_room", "room_id": room}))
            .await;
        while infos(&self.log) == before {
            self.read().await;
        }
    }

    /// Sends a danmaku of its own and leaves right after: the room handles the leave after it
    /// (and perhaps after some of the flood), so the viewer must get it.
    async fn leave(&mut self) {
        self.ws
            .send(json!({"type": "danmaku", "text": "bye"}))
            .await;
        self.ws.send(json!({"type": "leave_room"})).await;
        self.log.push(json!({"type": "left"}));
    }

    /// Everything that arrived up to a round trip.
    async fn read(&mut self) {
        let got = self.ws.sync().await;
        self.log.extend(got);
    }

    /// Reads until the danmaku `id` arrived.
    async fn read_until(&mut self, id: u64) {
        while !self.log.iter().any(|m| is_danmaku(m) && m["id"] == id) {
            self.read().await;
        }
    }

    fn max_id(&self) -> Option<u64> {
        self.log
            .iter()
            .filter(|m| is_danmaku(m))
            .filter_map(|m| m["id"].as_u64())
            .max()
    }

    /// Checks the log: after each `room_info`, the danmaku are exactly those that followed
    /// the join (the one after the newest in its `recent_danmaku`, or the session's first),
    /// each once and in order, up to the leave: at least up to the viewer's own last danmaku
    /// (which was pending when the room took the leave), and never one that the next join
    /// counts as before it. Returns the ids received.
    fn check(&self, first_id: u64, name: &str) -> Vec<u64> {
        // The next danmaku id due (once in the room); whether the viewer's `bye` is still due.
        let mut next: Option<u64> = None;
        let mut leaving = false;
        let mut ids = Vec::new();
        for message in &self.log {
            match message["type"].as_str() {
                Some("room_info") => {
                    assert!(!leaving, "{name}: back before its last danmaku came");
                    let recent = message["recent_danmaku"].as_array().expect("a list");
                    let from = recent
                        .last()
                        .and_then(|d| d["id"].as_u64())
                        .map_or(first_id, |id| id + 1);
                    if let Some(after_last_stay) = next {
                        assert!(
                            after_last_stay <= from,
                            "{name}: got danmaku up to {} while away, the join says {from}",
                            after_last_stay - 1
                        );
                    }
                    next = Some(from);
                }
                Some("left") => leaving = true,
                Some("danmaku") => {
                    let id = message["id"].as_u64().expect("an id");
                    let Some(expected) = next else {
                        panic!("{name}: danmaku {id} while out of the room");
                    };
                    assert_eq!(id, expected, "{name}: danmaku out of turn");
                    ids.push(id);
                    next = Some(id + 1);
                    if leaving && message["user_id"] == self.user_id && message["text"] == "bye" {
                        leaving = false;
                    }
                }
                _ => {}
            }
        }
        assert!(
            !leaving,
            "{name}: its last danmaku before leaving never came"
        );
        ids
    }
}

fn is_danmaku(message: &Value) -> bool {
    message["type"] == "danmaku"
}

/// A sender's flood, in small bursts so that it lasts while viewers come and go.
async fn flood(mut sender: WsClient, name: String) -> WsClient {
    let mut pace = tokio::time::interval(Duration::from_millis(4));
    for n in 0..PER_SENDER {
        if n % 2 == 0 {
            pace.tick().await;
        }
        sender
            .send(json!({"type": "danmaku", "text": format!("{name} {n}")}))
            .await;
    }
    sender
}

#[tokio::test]
async fn viewers_coming_and_going_in_a_flood_get_each_danmaku_of_their_stay_exactly_once() {
    let site = Site::start_with(|c| c.rooms.coalesce_ms = 50).await;
    let (host_ws, room) = site.live_host("coalhost").await;
    let mut host = Viewer {
        user_id: 0,
        ws: host_ws,
        log: Vec::new(),
    };
    let mut senders = Vec::new();
    for k in 0..3 {
        let (_, token) = site.user(&format!("coalsend{k}")).await;
        let mut ws = site.ws(&token).await;
        join(&mut ws, room).await;
        senders.push(ws);
    }
    let mut viewers = Vec::new();
    for k in 0..4 {
        viewers.push(Viewer::new(&site, &format!("coalview{k}")).await);
    }
    viewers[0].join(room).await;
    viewers[1].join(room).await;

    let floods: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(k, ws)| tokio::spawn(flood(ws, format!("s{k}"))))
        .collect();
    // Wait for the host to have seen the flood get this far, then change who is in.
    for (at, step) in [(100, 0), (300, 1), (600, 2)] {
        while host.max_id().is_none_or(|id| id < at) {
            host.read().await;
        }
        match step {
            0 => {
                viewers[2].join(room).await;
                viewers[0].leave().await;
            }
            1 => {
                viewers[3].join(room).await;
                // A refusal (only for the sender) comes after the sender's danmaku before it,
                // though that one waits in the tick's batch.
                let ws = &mut viewers[3].ws;
                ws.send(json!({"type": "danmaku", "text": "mine"})).await;
                ws.send(json!({"type": "danmaku", "text": ""})).await;
                ws.expect_error_code("empty_danmaku").await;
                assert!(ws.received(|m| is_danmaku(m) && m["text"] == "mine"));
                viewers[0].join(room).await;
                viewers[1].leave().await;
            }
            _ => {
                viewers[1].join(room).await;
                viewers[2].leave().await;
            }
        }
    }
    let mut senders = Vec::new();
    for flood in floods {
        senders.push(flood.await.expect("the flood ran"));
    }
    // Every danmaku: the floods, the three byes and viewer 3's.
    let total = (3 * PER_SENDER + 4) as u64;
    while host.log.iter().filter(|m| is_danmaku(m)).count() < total as usize {
        host.read().await;
    }
    let first_id = host
        .log
        .iter()
        .find(|m| is_danmaku(m))
        .and_then(|m| m["id"].as_u64())
        .expect("the host got danmaku");
    let last_id = first_id + total - 1;
    let host_ids = host.check(first_id, "host");
    assert_eq!(host_ids, (first_id..=last_id).collect::<Vec<_>>());
    assert!(
        host.ws.merged_frames > 0,
        "the flood was never merged: the test did not exercise merging"
    );

    for (k, viewer) in viewers.iter_mut().enumerate() {
        if k == 2 {
            // Left for good: read what came, then check nothing more does.
            viewer.read().await;
            viewer
                .ws
                .expect_none("danmaku", Duration::from_millis(300))
                .await;
        } else {
            viewer.read_until(last_id).await;
        }
        let ids = viewer.check(first_id, &format!("viewer {k}"));
        assert!(!ids.is_empty(), "viewer {k} got nothing");
        if k == 2 {
            assert!(
                ids.last().is_some_and(|id| *id < last_id),
                "viewer 2 left but got the flood's end"
            );
        }
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "viewer {k}: a duplicate or out of order"
        );
    }
    drop(senders);
}

#[tokio::test]
async fn a_quiet_room_sends_each_event_as_a_single_object() {
    let site = Site::start().await;
    let (mut host, room) = site.live_host("quiethost").await;
    let (_, token) = site.user("quietfan").await;
    let mut fan = site.ws(&token).await;
    join(&mut fan, room).await;
    // The audience settles first, so no audience event falls into the same tick.
    host.expect_where("audience", |m| m["count"] == 2).await;
    for n in 0..5 {
        let text = format!("quiet {n}");
        fan.send(json!({"type": "danmaku", "text": text})).await;
        fan.expect_where("danmaku", |m| m["text"] == text.as_str())
            .await;
        host.expect_where("danmaku", |m| m["text"] == text.as_str())
            .await;
    }
    assert_eq!(fan.merged_frames, 0);
    assert_eq!(host.merged_frames, 0);
}

#[tokio::test]
async fn with_coalescing_off_a_flood_comes_one_message_per_frame() {
    let site = Site::start_with(|c| c.rooms.coalesce_ms = 0).await;
    let (mut host, room) = site.live_host("offhost").await;
    let (_, token) = site.user("offsender").await;
    let mut sender = site.ws(&token).await;
    join(&mut sender, room).await;
    let sender = flood(sender, "off".to_owned()).await;
    let last = format!("off {}", PER_SENDER - 1);
    host.expect_where("danmaku", |m| m["text"] == last.as_str())
        .await;
    assert_eq!(host.merged_frames, 0);
    drop(sender);
}

#[test]
fn coalesce_ms_is_bounded_with_an_error_naming_the_key() {
    let dir = tempfile::tempdir().expect("a temp dir");
    for (value, ok) in [(0, true), (50, true), (51, false), (100_000, false)] {
        let path = write_file(
            dir.path(),
            "site.toml",
            &format!("[rooms]\ncoalesce_ms = {value}\n"),
        );
        let path = path.to_str().expect("a UTF-8 temp path");
        let (status, out, err) = run_command(dir.path(), &["check-config", "--config", path]);
        if ok {
            assert!(status.success(), "{value}: {err}");
            assert!(out.contains(&format!("coalesce_ms = {value}")), "{out}");
        } else {
            assert_eq!(status.code(), Some(2), "{value} accepted: {out}");
            assert!(
                err.contains("rooms.coalesce_ms") && err.contains("50"),
                "{value}: {err}"
            );
        }
    }
}
