//! The `http` media backend against fake rtp / distributor / processor services that speak
//! docs/MEDIA-PROTOCOL.md exactly (an axum server in the test, on 127.0.0.1:0). The fake checks
//! every request body strictly, records it, and can be told to refuse (500 with an error body),
//! hang (longer than the client's timeout) or answer bad JSON at any step. RoomManager is driven
//! over real WebSockets through start, co-stream, layout change and close, with failures at each
//! step; the HTTP client is also called directly for the endpoints the rooms do not use.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use roommanager::config::{Config, HttpMediaConfig, MediaBackend};
use roommanager::media::http::HttpMedia;
use roommanager::media::{
    LiveId, MediaError, MediaPlane, MixLayout, MixSpan, MixSpec, Recording, SessionMedia,
    StreamStatus,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::accounts::{guest_token, relaxed, verified_user};
use crate::common::ws::WsClient;
use crate::common::{wait_for, TestServer};
use crate::rooms::join;

/// The client's timeout (`media.http.timeout_secs`) is 1 s; a hanging service answers after this.
const HANG: Duration = Duration::from_secs(4);

// ---- the fake services ----

/// What the next call of a step does instead of answering normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// 500 with `{"error": {"code", "message"}}`.
    Refuse,
    /// Answers only after [`HANG`].
    Hang,
    /// 200 with a body that is not JSON.
    BadJson,
    /// 200 with JSON of the wrong shape.
    WrongShape,
    /// seekRecord only: `{"record": null}`.
    NoRecord,
}

const FAULTS: [Fault; 3] = [Fault::Refuse, Fault::Hang, Fault::BadJson];

impl Fault {
    /// What the host is told, in part, when a step fails this way.
    fn symptom(self) -> &'static str {
        match self {
            Fault::Refuse => "refused by the fake",
            Fault::Hang => "did not answer in time",
            Fault::BadJson | Fault::WrongShape => "answered nonsense",
            Fault::NoRecord => "",
        }
    }
}

/// One request the fake got: its step (`getLiveInfo/{purpose}` or the endpoint), its service,
/// its body, and whether it met the protocol.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) step: String,
    service: String,
    pub(crate) body: Value,
    valid: bool,
}

#[derive(Default)]
struct FakeState {
    received: Mutex<Vec<Received>>,
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    next: AtomicU64,
    pulling: Mutex<HashSet<String>>,
    removed: Mutex<HashSet<String>>,
}

pub(crate) struct Fake {
    base: String,
    state: Arc<FakeState>,
}

impl Fake {
    async fn start() -> Fake {
        let state = Arc::new(FakeState::default());
        let app = Router::new()
            .route("/{service}/{endpoint}", post(serve))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake services");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fake { base, state }
    }

    /// The three base URLs (the distributor's with a trailing slash, as people write them).
    fn config(&self) -> HttpMediaConfig {
        HttpMediaConfig {
            rtp_url: format!("{}/rtp", self.base),
            distributor_url: format!("{}/distributor/", self.base),
            processor_url: format!("{}/processor", self.base),
            timeout_secs: 1,
        }
    }

    /// Makes the next calls of `step` fail as listed, in order.
    pub(crate) fn fail(&self, step: &str, faults: impl IntoIterator<Item = Fault>) {
        self.state
            .faults
            .lock()
            .unwrap()
            .entry(step.to_owned())
            .or_default()
            .extend(faults);
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// The bodies of every call of `step`, in order.
    pub(crate) fn bodies(&self, step: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r.step == step)
            .map(|r| r.body)
            .collect()
    }

    pub(crate) fn count(&self, step: &str) -> usize {
        self.bodies(step).len()
    }

    /// The steps called since the `from`th call.
    fn steps_since(&self, from: usize) -> Vec<String> {
        self.received()
            .into_iter()
            .skip(from)
            .map(|r| r.step)
            .collect()
    }

    /// Every request so far met the protocol (right service, method, content type, body).
    #[track_caller]
    fn assert_all_valid(&self) {
        let bad: Vec<Received> = self.received().into_iter().filter(|r| !r.valid).collect();
        assert!(bad.is_empty(), "requests outside the protocol: {bad:?}");
    }

    /// Waits until `step` has been called `n` times; returns its bodies.
    pub(crate) async fn wait_calls(&self, step: &str, n: usize) -> Vec<Value> {
        wait_for(|| async {
            let bodies = self.bodies(step);
            (bodies.len() >= n).then_some(bodies)
        })
        .await
    }
}

// The request bodies of docs/MEDIA-PROTOCOL.md, strictly: no missing and no unknown fields.

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Purpose {
    Host,
    Guest,
    Mix,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetLiveInfo {
    room_id: u64,
    purpose: Purpose,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForLive {
    live_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeekRecord {
    live_id: String,
    mixes: Vec<SeekMix>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeekMix {
    live_id: String,
    from: u64,
    to: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveRecords {
    live_ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewConnect {
    host: String,
    guest: String,
    mixed: String,
    layout: MixLayout,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRoomInfo {
    mixed: String,
    layout: MixLayout,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseRoom {
    mixed: String,
}

fn answer(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message}});
    answer(status, body.to_string())
}

/// Why the fake refuses a request outside the protocol: status, code, message.
type Refusal = (StatusCode, &'static str, String);

fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, "bad_request", e.to_string()))
}

async fn serve(
    State(fake): State<Arc<FakeState>>,
    Path((service, endpoint)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let step = match endpoint.as_str() {
        "getLiveInfo" => format!("getLiveInfo/{}", parsed["purpose"].as_str().unwrap_or("?")),
        other => other.to_owned(),
    };
    let owner = match endpoint.as_str() {
        "getLiveInfo" => "rtp",
        "startPull" | "finishPull" | "checkStream" | "seekRecord" | "removeRecords" => {
            "distributor"
        }
        "newConnect" | "updateRoomInfo" | "closeRoom" => "processor",
        _ => "nobody",
    };
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let result = if owner != service {
        Err((
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint".to_owned(),
        ))
    } else if !json_type {
        Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_request",
            "send JSON".to_owned(),
        ))
    } else {
        Ok(())
    };
    let result = match result {
        Ok(()) => fake.normal_answer(&endpoint, &body),
        Err(refusal) => Err(refusal),
    };
    fake.received.lock().unwrap().push(Received {
        step: step.clone(),
        service,
        body: parsed,
        valid: result.is_ok(),
    });
    let answer_body = match result {
        Ok(answer_body) => answer_body,
        Err((status, code, message)) => return error(status, code, &message),
    };
    let fault = fake
        .faults
        .lock()
        .unwrap()
        .get_mut(&step)
        .and_then(VecDeque::pop_front);
    match fault {
        None => answer(StatusCode::OK, answer_body.to_string()),
        Some(Fault::Refuse) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "test_refusal",
            &format!("{endpoint} refused by the fake"),
        ),
        Some(Fault::Hang) => {
            tokio::time::sleep(HANG).await;
            answer(StatusCode::OK, answer_body.to_string())
        }
        Some(Fault::BadJson) => answer(StatusCode::OK, r#"{"live_id": "half"#.to_owned()),
        Some(Fault::WrongShape) => answer(StatusCode::OK, r#"{"status": "exploded"}"#.to_owned()),
        Some(Fault::NoRecord) => answer(StatusCode::OK, r#"{"record": null}"#.to_owned()),
    }
}

impl FakeState {
    /// The protocol's answer to a valid request (side effects included), or its refusal.
    fn normal_answer(&self, endpoint: &str, body: &[u8]) -> Result<Value, Refusal> {
        Ok(match endpoint {
            "getLiveInfo" => {
                let request: GetLiveInfo = decode(body)?;
                let purpose = match request.purpose {
                    Purpose::Host => "host",
                    Purpose::Guest => "guest",
                    Purpose::Mix => "mix",
                };
                let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
                let live_id = format!("{purpose}-{}-{n}", request.room_id);
                json!({
                    "live_id": live_id,
                    "live_code": format!("secret{n}"),
                    "push_url": format!("rtmp://fake.lan/live/{live_id}?code=secret{n}"),
                })
            }
            "startPull" => {
                let request: ForLive = decode(body)?;
                self.pulling.lock().unwrap().insert(request.live_id.clone());
                json!({"watch_url": watch_url(&request.live_id)})
            }
            "finishPull" => {
                let request: ForLive = decode(body)?;
                self.pulling.lock().unwrap().remove(&request.live_id);
                json!({})
            }
            "checkStream" => {
                let request: ForLive = decode(body)?;
                let on_air = self.pulling.lock().unwrap().contains(&request.live_id);
                json!({"status": if on_air { "on_air" } else { "waiting" }})
            }
            "seekRecord" => {
                let request: SeekRecord = decode(body)?;
                let spans_valid = request.mixes.iter().all(|m| m.from <= m.to)
                    && request.mixes.iter().all(|m| !m.live_id.is_empty());
                if !spans_valid {
                    let problem = "a mix span without an id, or ending before it starts";
                    return Err((StatusCode::BAD_REQUEST, "bad_request", problem.to_owned()));
                }
                if self.removed.lock().unwrap().contains(&request.live_id) {
                    json!({"record": null})
                } else {
                    json!({"record": {
                        "url": record_url(&request.live_id),
                        "duration_secs": 42,
                        "thumbnail_url": thumbnail_url(&request.live_id),
                    }})
                }
            }
            "removeRecords" => {
                let request: RemoveRecords = decode(body)?;
                self.removed.lock().unwrap().extend(request.live_ids);
                json!({})
            }
            "newConnect" => {
                let request: NewConnect = decode(body)?;
                let _ = (request.host, request.guest, request.mixed, request.layout);
                json!({})
            }
            "updateRoomInfo" => {
                let request: UpdateRoomInfo = decode(body)?;
                let _ = (request.mixed, request.layout);
                json!({})
            }
            "closeRoom" => {
                let request: CloseRoom = decode(body)?;
                let _ = request.mixed;
                json!({})
            }
            _ => {
                let message = "no such endpoint".to_owned();
                return Err((StatusCode::NOT_FOUND, "not_found", message));
            }
        })
    }
}

fn watch_url(live_id: &str) -> String {
    format!("http://fake.lan/hls/{live_id}/index.m3u8")
}

fn record_url(live_id: &str) -> String {
    format!("http://fake.lan/records/{live_id}.mp4")
}

/// A request body with the times of its mix spans left out (the fake checked them), to compare
/// with what a test expects.
fn without_times(mut body: Value) -> Value {
    let mixes = body.get_mut("mixes").and_then(Value::as_array_mut);
    for mix in mixes.into_iter().flatten() {
        if let Some(span) = mix.as_object_mut() {
            span.remove("from");
            span.remove("to");
        }
    }
    body
}

fn thumbnail_url(live_id: &str) -> String {
    format!("http://fake.lan/records/{live_id}.jpg")
}

fn push_url_of(live_id: &str) -> String {
    let n = live_id.rsplit('-').next().expect("a numbered live id");
    format!("rtmp://fake.lan/live/{live_id}?code=secret{n}")
}

// ---- RoomManager with the http backend ----

pub(crate) struct Site {
    pub(crate) server: TestServer,
    pub(crate) fake: Fake,
}

impl Site {
    pub(crate) async fn start() -> Site {
        let fake = Fake::start().await;
        let media = fake.config();
        let server = TestServer::start_with(|c: &mut Config| {
            relaxed(c);
            c.media.backend = MediaBackend::Http;
            c.media.http = media;
            c.rooms.media_timeout_secs = 2;
            c.rooms.record_delay_secs = 0;
            // Tests compare the exact calls of each close: a failed seekRecord's retry (in
            // the background, later) is never one of them.
            c.rooms.recording_retry_secs = 3600;
            c.rooms.media_attempts = 2;
            c.rooms.chat_per_window = 1000;
        })
        .await;
        Site { server, fake }
    }

    /// A registered, verified user; returns (user id, session token).
    pub(crate) async fn user(&self, name: &str) -> (u64, String) {
        verified_user(&self.server, name).await
    }

    async fn viewer(&self) -> WsClient {
        let token = guest_token(&self.server).await;
        WsClient::connect(&self.server.base, &token).await
    }

    pub(crate) async fn ws(&self, token: &str) -> WsClient {
        WsClient::connect(&self.server.base, token).await
    }

    async fn live_rooms(&self) -> Vec<Value> {
        let body: Value = self.server.get("/api/v1/rooms").await.json().await.unwrap();
        body["rooms"].as_array().cloned().unwrap_or_default()
    }

    /// The state of the one room in the directory.
    async fn state(&self) -> Value {
        let rooms = self.live_rooms().await;
        assert_eq!(rooms.len(), 1, "{rooms:?}");
        rooms[0]["state"].clone()
    }

    /// Waits until no room task is left (a closed room's media calls are all done).
    /// Waits until every room closed and every ended session's recording was asked for (and
    /// listed, when there was one): that part goes on in the background after a room closes.
    pub(crate) async fn wait_sessions_finished(&self) {
        let rooms = &self.server.app().rooms;
        wait_for(|| async {
            (rooms.open_rooms() == 0 && rooms.sessions_finishing() == 0).then_some(())
        })
        .await;
    }

    pub(crate) fn records(&self) -> Vec<roommanager::model::Record> {
        self.server.app().store.records().expect("records")
    }
}

/// Waits for an `error` message with this code; returns it whole.
async fn error_with(client: &mut WsClient, code: &str) -> Value {
    loop {
        let error = client.expect("error").await;
        if error["code"] == code {
            return error;
        }
    }
}

#[track_caller]
fn assert_says(error: &Value, fault: Fault) {
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(fault.symptom()),
        "{fault:?}: the message says what went wrong: {error}"
    );
}

/// Starts a live session; returns the host's live id (checked against the fake's answers).
pub(crate) async fn go_live(site: &Site, host: &mut WsClient) -> (u64, String) {
    host.send(json!({"type": "start_live", "title": "over http"}))
        .await;
    let started = host.expect("live_started").await;
    let room = started["room_id"].as_u64().expect("room id");
    let live_id = started["live_id"].as_str().expect("live id").to_owned();
    assert!(live_id.starts_with(&format!("host-{room}-")), "{started}");
    assert_eq!(started["push_url"], push_url_of(&live_id).as_str());
    assert_eq!(started["watch_url"], watch_url(&live_id).as_str());
    assert_eq!(
        site.fake.bodies("getLiveInfo/host").last(),
        Some(&json!({"room_id": room, "purpose": "host"}))
    );
    assert_eq!(
        site.fake.bodies("startPull").last(),
        Some(&json!({"live_id": live_id}))
    );
    (room, live_id)
}

#[tokio::test]
async fn a_live_session_with_a_co_stream_runs_over_the_three_services() {
    let site = Site::start().await;
    let (_, host_token) = site.user("hhost1").await;
    let mut host = site.ws(&host_token).await;
    let (room, host_live) = go_live(&site, &mut host).await;
    assert_eq!(site.state().await, "live");

    let (fan_id, fan_token) = site.user("hfan1").await;
    let mut fan = site.ws(&fan_token).await;
    join(&mut fan, room).await;
    let mut viewer = site.viewer().await;
    let info = join(&mut viewer, room).await;
    assert_eq!(info["watch_url"], watch_url(&host_live).as_str());

    // Co-stream: guest and mix credentials, the mix, then the mixed stream's distribution.
    let before = site.fake.received().len();
    fan.send(json!({"type": "apply_connect"})).await;
    host.expect("connect_request").await;
    host.send(json!({"type": "answer_connect", "user_id": fan_id, "accept": true}))
        .await;
    let started = fan.expect("connect_started").await;
    assert_eq!(
        site.fake.steps_since(before),
        [
            "getLiveInfo/guest",
            "getLiveInfo/mix",
            "newConnect",
            "startPull"
        ]
    );
    let guest_info = &site.fake.bodies("getLiveInfo/guest")[0];
    assert_eq!(guest_info, &json!({"room_id": room, "purpose": "guest"}));
    assert_eq!(
        site.fake.bodies("getLiveInfo/mix")[0],
        json!({"room_id": room, "purpose": "mix"})
    );
    let connect = site.fake.bodies("newConnect")[0].clone();
    let guest_live = connect["guest"].as_str().unwrap().to_owned();
    let mixed = connect["mixed"].as_str().unwrap().to_owned();
    assert!(
        guest_live.starts_with(&format!("guest-{room}-")),
        "{connect}"
    );
    assert!(mixed.starts_with(&format!("mix-{room}-")), "{connect}");
    assert_eq!(
        connect,
        json!({"host": host_live, "guest": guest_live, "mixed": mixed, "layout": "side_by_side"})
    );
    assert_eq!(
        site.fake.bodies("startPull").last(),
        Some(&json!({"live_id": mixed})),
        "the mixed stream is distributed under the id the processor writes"
    );
    assert_eq!(started["push_url"], push_url_of(&guest_live).as_str());
    assert_eq!(started["watch_url"], watch_url(&mixed).as_str());
    let seen = viewer.expect("connect_started").await;
    assert!(seen.get("push_url").is_none(), "{seen}");
    assert_eq!(
        viewer.expect("watch_url").await["watch_url"],
        watch_url(&mixed).as_str()
    );
    assert_eq!(site.state().await, "co_streaming");

    // Layout change.
    host.send(json!({"type": "update_room", "layout": "picture_in_picture"}))
        .await;
    let update = site.fake.wait_calls("updateRoomInfo", 1).await;
    assert_eq!(
        update[0],
        json!({"mixed": mixed, "layout": "picture_in_picture"})
    );
    let before_sync = host.sync().await;
    assert!(
        !before_sync.iter().any(|m| m["type"] == "error"),
        "{before_sync:?}"
    );

    // The guest ends the co-stream: the mix is closed and its distribution stopped.
    fan.send(json!({"type": "end_connect"})).await;
    let ended = viewer.expect("connect_ended").await;
    assert_eq!(ended["watch_url"], watch_url(&host_live).as_str());
    assert_eq!(
        site.fake.wait_calls("closeRoom", 1).await[0],
        json!({"mixed": mixed})
    );
    assert_eq!(
        site.fake.wait_calls("finishPull", 1).await[0],
        json!({"live_id": mixed})
    );
    assert_eq!(site.state().await, "live");

    // A second co-stream keeps the chosen layout; closing the room ends it and the session.
    fan.send(json!({"type": "apply_connect"})).await;
    host.expect("connect_request").await;
    host.send(json!({"type": "answer_connect", "user_id": fan_id, "accept": true}))
        .await;
    fan.expect("connect_started").await;
    let connect = site.fake.bodies("newConnect")[1].clone();
    assert_eq!(connect["layout"], "picture_in_picture");
    assert_eq!(connect["host"], host_live.as_str());
    let mixed2 = connect["mixed"].as_str().unwrap().to_owned();
    assert_ne!(mixed2, mixed, "each co-stream gets a fresh mixed stream");

    let before = site.fake.received().len();
    host.send(json!({"type": "close_room"})).await;
    viewer.expect("room_closed").await;
    fan.expect("room_closed").await;
    site.wait_sessions_finished().await;
    assert_eq!(
        site.fake.steps_since(before),
        ["closeRoom", "finishPull", "finishPull", "seekRecord"]
    );
    let closing: Vec<Value> = site
        .fake
        .received()
        .into_iter()
        .skip(before)
        .map(|r| r.body)
        .collect();
    let mixes = json!([{"live_id": mixed}, {"live_id": mixed2}]);
    assert_eq!(
        closing.into_iter().map(without_times).collect::<Vec<_>>(),
        [
            json!({"mixed": mixed2}),
            json!({"live_id": mixed2}),
            json!({"live_id": host_live}),
            json!({"live_id": host_live, "mixes": mixes}),
        ],
        "the recording is asked for with both co-streams, in order"
    );
    let records = site.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].url, record_url(&host_live));
    assert_eq!(records[0].thumbnail_url, Some(thumbnail_url(&host_live)));
    assert_eq!(records[0].duration_secs, 42);
    assert_eq!(records[0].title, "hhost1's room · over http");
    assert!(site.live_rooms().await.is_empty());
    site.fake.assert_all_valid();
    let services: HashSet<String> = site
        .fake
        .received()
        .into_iter()
        .map(|r| r.service)
        .collect();
    assert_eq!(services.len(), 3, "{services:?}");
}

#[tokio::test]
async fn starting_fails_at_each_step_in_each_way_is_retried_and_reported() {
    let site = Site::start().await;
    let (_, token) = site.user("hhost2").await;
    let mut host = site.ws(&token).await;
    for step in ["getLiveInfo/host", "startPull"] {
        for fault in FAULTS {
            let credentials = site.fake.count("getLiveInfo/host");
            let pulls = site.fake.count("startPull");
            site.fake.fail(step, [fault, fault]);
            host.send(json!({"type": "start_live"})).await;
            let error = error_with(&mut host, "media_unavailable").await;
            assert_eq!(error["about"], "start_live", "{error}");
            assert_says(&error, fault);
            if step == "startPull" {
                assert_eq!(site.fake.count("getLiveInfo/host"), credentials + 1);
                assert_eq!(site.fake.count("startPull"), pulls + 2, "{fault:?} retried");
                let tried = site.fake.bodies("startPull");
                assert_eq!(tried[pulls], tried[pulls + 1], "the same stream is retried");
            } else {
                assert_eq!(
                    site.fake.count("getLiveInfo/host"),
                    credentials + 2,
                    "{fault:?} retried"
                );
                assert_eq!(site.fake.count("startPull"), pulls, "no distribution");
            }
            assert!(site.live_rooms().await.is_empty(), "{step} {fault:?}");
            assert_eq!(site.fake.count("finishPull"), 0);
        }
    }
    // A failure followed by a success: the retry makes the start work.
    site.fake.fail("getLiveInfo/host", [Fault::Refuse]);
    site.fake.fail("startPull", [Fault::BadJson]);
    let (_, live_id) = go_live(&site, &mut host).await;
    assert_eq!(site.state().await, "live");
    let pulls = site.fake.bodies("startPull");
    assert_eq!(pulls[pulls.len() - 2], json!({"live_id": live_id}));
    site.fake.assert_all_valid();
}

#[tokio::test]
async fn co_streaming_fails_at_each_step_in_each_way_and_the_room_stays_live() {
    let site = Site::start().await;
    let (_, host_token) = site.user("hhost3").await;
    let mut host = site.ws(&host_token).await;
    let (room, host_live) = go_live(&site, &mut host).await;
    let (fan_id, fan_token) = site.user("hfan3").await;
    let mut fan = site.ws(&fan_token).await;
    join(&mut fan, room).await;
    let mut viewer = site.viewer().await;
    join(&mut viewer, room).await;

    for step in [
        "getLiveInfo/guest",
        "getLiveInfo/mix",
        "newConnect",
        "startPull",
    ] {
        for fault in FAULTS {
            let before = site.fake.received().len();
            let closes = site.fake.count("closeRoom");
            let finishes = site.fake.count("finishPull");
            site.fake.fail(step, [fault]);
            fan.send(json!({"type": "apply_connect"})).await;
            host.expect("connect_request").await;
            host.send(json!({"type": "answer_connect", "user_id": fan_id, "accept": true}))
                .await;
            let answer = fan.expect("connect_answer").await;
            assert_eq!(answer["accept"], false, "{step} {fault:?}: {answer}");
            assert_eq!(answer["reason"], "media_unavailable");
            let error = error_with(&mut host, "media_unavailable").await;
            assert_eq!(error["about"], "answer_connect");
            assert_says(&error, fault);
            let steps = site.fake.steps_since(before);
            let all = [
                "getLiveInfo/guest",
                "getLiveInfo/mix",
                "newConnect",
                "startPull",
            ];
            let reached = all.iter().position(|s| *s == step).unwrap() + 1;
            if step == "newConnect" || step == "startPull" {
                // The mix may have started (a timeout says nothing): it is closed again, and
                // both one-off streams are finished, which revokes their credentials.
                let mixed = site.fake.bodies("newConnect").last().unwrap()["mixed"].clone();
                let guest = site.fake.bodies("newConnect").last().unwrap()["guest"].clone();
                assert_eq!(steps[..reached], all[..reached]);
                assert_eq!(
                    steps[reached..],
                    ["closeRoom", "finishPull", "finishPull"],
                    "{step} {fault:?}"
                );
                assert_eq!(
                    site.fake.bodies("closeRoom")[closes],
                    json!({ "mixed": mixed })
                );
                let finished = site.fake.bodies("finishPull");
                assert_eq!(
                    finished[finishes..],
                    [json!({ "live_id": mixed }), json!({ "live_id": guest })]
                );
            } else if step == "getLiveInfo/mix" {
                // The guest's credentials were given: they are revoked.
                assert_eq!(steps[..reached], all[..reached]);
                assert_eq!(steps[reached..], ["finishPull"], "{step} {fault:?}");
                let finished = &site.fake.bodies("finishPull")[finishes];
                assert!(
                    finished["live_id"]
                        .as_str()
                        .unwrap()
                        .starts_with(&format!("guest-{room}-")),
                    "{finished}"
                );
                assert_eq!(site.fake.count("closeRoom"), closes);
            } else {
                assert_eq!(steps, all[..reached], "{step} {fault:?}: no step after it");
                assert_eq!(site.fake.count("closeRoom"), closes);
            }
            assert_eq!(site.state().await, "live", "{step} {fault:?}");
            let seen = viewer.sync().await;
            assert!(
                !seen
                    .iter()
                    .any(|m| m["type"] == "connect_started" || m["type"] == "watch_url"),
                "viewers keep the host's picture: {seen:?}"
            );
        }
    }

    // After all that, a co-stream works.
    fan.send(json!({"type": "apply_connect"})).await;
    host.expect("connect_request").await;
    host.send(json!({"type": "answer_connect", "user_id": fan_id, "accept": true}))
        .await;
    fan.expect("connect_started").await;
    let connect = site.fake.bodies("newConnect").last().unwrap().clone();
    assert_eq!(connect["host"], host_live.as_str());
    assert_eq!(
        viewer.expect("watch_url").await["watch_url"],
        watch_url(connect["mixed"].as_str().unwrap()).as_str()
    );
    assert_eq!(site.state().await, "co_streaming");
    site.fake.assert_all_valid();
}

#[tokio::test]
async fn layout_and_co_stream_end_failures_are_reported_to_the_host_and_the_room_carries_on() {
    let site = Site::start().await;
    let (_, host_token) = site.user("hhost4").await;
    let mut host = site.ws(&host_token).await;
    let (room, host_live) = go_live(&site, &mut host).await;
    let (fan_id, fan_token) = site.user("hfan4").await;
    let mut fan = site.ws(&fan_token).await;
    join(&mut fan, room).await;
    let mut viewer = site.viewer().await;
    join(&mut viewer, room).await;
    let mixed = start_co_stream(&site, &mut host, &mut fan, fan_id).await;

    // updateRoomInfo fails: the host is told, the co-stream goes on.
    for (fault, layout) in
        FAULTS
            .into_iter()
            .zip(["picture_in_picture", "side_by_side", "picture_in_picture"])
    {
        let updates = site.fake.count("updateRoomInfo");
        site.fake.fail("updateRoomInfo", [fault]);
        host.send(json!({"type": "update_room", "layout": layout}))
            .await;
        let error = error_with(&mut host, "media_unavailable").await;
        assert_says(&error, fault);
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("change the layout"),
            "{error}"
        );
        assert_eq!(
            site.fake.bodies("updateRoomInfo")[updates],
            json!({"mixed": mixed, "layout": layout})
        );
        assert_eq!(site.state().await, "co_streaming");
        let seen = viewer.sync().await;
        assert!(
            !seen.iter().any(|m| m["type"] == "connect_ended"),
            "{seen:?}"
        );
    }

    // Ending the co-stream: closeRoom fails each way; viewers are switched back all the same.
    let mut mixed = mixed;
    for fault in FAULTS {
        let closes = site.fake.count("closeRoom");
        site.fake.fail("closeRoom", [fault]);
        fan.send(json!({"type": "end_connect"})).await;
        let ended = viewer.expect("connect_ended").await;
        assert_eq!(ended["watch_url"], watch_url(&host_live).as_str());
        let error = error_with(&mut host, "media_unavailable").await;
        assert_says(&error, fault);
        assert!(
            error["message"].as_str().unwrap().contains("close the mix"),
            "{error}"
        );
        assert_eq!(
            site.fake.bodies("closeRoom")[closes],
            json!({ "mixed": mixed })
        );
        assert_eq!(site.state().await, "live");
        mixed = start_co_stream(&site, &mut host, &mut fan, fan_id).await;
    }

    // finishPull of the mixed stream fails each way: reported, the room carries on.
    for fault in FAULTS {
        let pulls = site.fake.count("finishPull");
        site.fake.fail("finishPull", [fault]);
        host.send(json!({"type": "end_connect"})).await;
        viewer.expect("connect_ended").await;
        let error = error_with(&mut host, "media_unavailable").await;
        assert_says(&error, fault);
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("stop the mixed stream"),
            "{error}"
        );
        assert_eq!(
            site.fake.bodies("finishPull")[pulls],
            json!({ "live_id": mixed })
        );
        assert_eq!(site.state().await, "live");
        mixed = start_co_stream(&site, &mut host, &mut fan, fan_id).await;
    }
    assert_eq!(site.state().await, "co_streaming");
    site.fake.assert_all_valid();
}

/// The fan applies, the host accepts, the co-stream starts; returns the mixed live id.
async fn start_co_stream(
    site: &Site,
    host: &mut WsClient,
    fan: &mut WsClient,
    fan_id: u64,
) -> String {
    fan.send(json!({"type": "apply_connect"})).await;
    host.expect("connect_request").await;
    host.send(json!({"type": "answer_connect", "user_id": fan_id, "accept": true}))
        .await;
    let started = fan.expect("connect_started").await;
    let connect = site.fake.bodies("newConnect").last().unwrap().clone();
    let mixed = connect["mixed"].as_str().unwrap().to_owned();
    assert_eq!(started["watch_url"], watch_url(&mixed).as_str());
    assert_eq!(
        site.fake.bodies("startPull").last(),
        Some(&json!({ "live_id": mixed }))
    );
    mixed
}

#[tokio::test]
async fn closing_survives_failures_at_each_step_and_lists_the_recording_when_it_can() {
    let site = Site::start().await;
    let (_, host_token) = site.user("hhost5").await;
    let mut host = site.ws(&host_token).await;
    let (fan_id, fan_token) = site.user("hfan5").await;
    let mut fan = site.ws(&fan_token).await;

    // (failing step, how, with a co-stream running, whether a recording gets listed)
    let mut cases = Vec::new();
    for fault in FAULTS {
        cases.push(("closeRoom", fault, true, true));
        cases.push(("finishPull", fault, false, true));
        cases.push(("seekRecord", fault, false, false));
    }
    cases.push(("seekRecord", Fault::NoRecord, false, false));
    cases.push(("seekRecord", Fault::WrongShape, false, false));
    for (step, fault, with_guest, listed) in cases {
        let (room, host_live) = go_live(&site, &mut host).await;
        join(&mut fan, room).await;
        let mixed = if with_guest {
            Some(start_co_stream(&site, &mut host, &mut fan, fan_id).await)
        } else {
            None
        };
        let records = site.records().len();
        let before = site.fake.received().len();
        site.fake.fail(step, [fault]);
        host.send(json!({"type": "close_room"})).await;
        fan.expect("room_closed").await;
        site.wait_sessions_finished().await;
        let closing: Vec<(String, Value)> = site
            .fake
            .received()
            .into_iter()
            .skip(before)
            .map(|r| (r.step, without_times(r.body)))
            .collect();
        let mut expected = Vec::new();
        if let Some(mixed) = &mixed {
            expected.push(("closeRoom".to_owned(), json!({ "mixed": mixed })));
            expected.push(("finishPull".to_owned(), json!({ "live_id": mixed })));
        }
        expected.push(("finishPull".to_owned(), json!({ "live_id": host_live })));
        let mixes: Vec<Value> = mixed.iter().map(|m| json!({ "live_id": m })).collect();
        expected.push((
            "seekRecord".to_owned(),
            json!({ "live_id": host_live, "mixes": mixes }),
        ));
        assert_eq!(
            closing, expected,
            "{step} {fault:?}: every step is still taken"
        );
        let now = site.records();
        if listed {
            assert_eq!(now.len(), records + 1, "{step} {fault:?}");
            let record = now.iter().find(|r| r.url == record_url(&host_live));
            assert!(record.is_some(), "{step} {fault:?}: {now:?}");
        } else {
            assert_eq!(now.len(), records, "{step} {fault:?}: no recording listed");
        }
        assert!(site.live_rooms().await.is_empty(), "{step} {fault:?}");
    }
    site.fake.assert_all_valid();
}

#[tokio::test]
async fn the_client_maps_every_endpoint_and_every_failure() {
    let fake = Fake::start().await;
    let media = Arc::new(HttpMedia::new(&fake.config()));
    let live = |s: &str| LiveId(s.to_owned());

    // Every endpoint, answered.
    let host = media.new_stream(7, "host").await.expect("getLiveInfo");
    assert_eq!(host.live_id.0, "host-7-1");
    assert_eq!(host.push_url, push_url_of("host-7-1"));
    assert_eq!(
        media.check_stream(&host.live_id).await,
        Ok(StreamStatus::Waiting)
    );
    let watch = media.start_distribution(&host.live_id).await;
    assert_eq!(watch, Ok(watch_url("host-7-1")));
    assert_eq!(
        media.check_stream(&host.live_id).await,
        Ok(StreamStatus::OnAir)
    );
    let spec = MixSpec {
        host: host.live_id.clone(),
        guest: live("guest-7-2"),
        mixed: live("mix-7-3"),
        layout: MixLayout::PictureInPicture,
    };
    assert_eq!(media.start_mix(&spec).await, Ok(()));
    assert_eq!(
        media.update_mix(&spec.mixed, MixLayout::SideBySide).await,
        Ok(())
    );
    assert_eq!(media.close_mix(&spec.mixed).await, Ok(()));
    assert_eq!(media.stop_distribution(&host.live_id).await, Ok(()));
    let session = SessionMedia {
        host: host.live_id.clone(),
        recording_tag: None,
        started_at: 1_795_700_000,
        ended_at: 1_795_700_060,
        mixes: vec![MixSpan {
            mixed: spec.mixed.clone(),
            from: 1_795_700_010,
            to: 1_795_700_050,
        }],
    };
    let record = media.recording(&session).await.expect("seekRecord");
    let record = record.expect("a recording");
    assert_eq!(
        (record.url.as_str(), record.duration_secs),
        (record_url("host-7-1").as_str(), 42)
    );
    assert_eq!(record.thumbnail_url, Some(thumbnail_url("host-7-1")));
    assert_eq!(
        fake.bodies("seekRecord")[0],
        json!({"live_id": "host-7-1", "mixes": [
            {"live_id": "mix-7-3", "from": 1_795_700_010_u64, "to": 1_795_700_050_u64}
        ]})
    );
    let mixes = [spec.mixed.clone()];
    assert_eq!(
        media.remove_recording(&host.live_id, &mixes, &record).await,
        Ok(())
    );
    assert!(media.recording(&session).await.unwrap().is_none());
    // The distributor recorded every stream it served: the mix goes too.
    assert_eq!(
        fake.bodies("removeRecords"),
        [json!({"live_ids": ["host-7-1", "mix-7-3"]})]
    );
    assert_eq!(
        fake.bodies("newConnect"),
        [
            json!({"host": "host-7-1", "guest": "guest-7-2", "mixed": "mix-7-3",
                "layout": "picture_in_picture"})
        ]
    );
    assert_eq!(
        fake.bodies("updateRoomInfo"),
        [json!({"mixed": "mix-7-3", "layout": "side_by_side"})]
    );
    assert_eq!(
        fake.bodies("checkStream")[0],
        json!({"live_id": "host-7-1"})
    );
    fake.assert_all_valid();

    // Every endpoint, failing each way (in parallel: each hang costs the 1 s timeout).
    let steps = [
        "getLiveInfo/guest",
        "startPull",
        "finishPull",
        "checkStream",
        "seekRecord",
        "removeRecords",
        "newConnect",
        "updateRoomInfo",
        "closeRoom",
    ];
    for fault in [Fault::Refuse, Fault::Hang, Fault::BadJson] {
        for step in steps {
            fake.fail(step, [fault]);
        }
        let mut calls = Vec::new();
        for step in steps {
            let media = media.clone();
            let spec = spec.clone();
            let session = session.clone();
            calls.push(tokio::spawn(async move {
                let id = LiveId("host-7-1".to_owned());
                let outcome = match step {
                    "getLiveInfo/guest" => media.new_stream(7, "guest").await.map(|_| ()),
                    "startPull" => media.start_distribution(&id).await.map(|_| ()),
                    "finishPull" => media.stop_distribution(&id).await,
                    "checkStream" => media.check_stream(&id).await.map(|_| ()),
                    "seekRecord" => media.recording(&session).await.map(|_| ()),
                    "removeRecords" => {
                        let gone = Recording {
                            url: record_url("host-7-1"),
                            duration_secs: 1,
                            thumbnail_url: None,
                        };
                        media.remove_recording(&id, &[], &gone).await
                    }
                    "newConnect" => media.start_mix(&spec).await,
                    "updateRoomInfo" => media.update_mix(&spec.mixed, spec.layout).await,
                    _ => media.close_mix(&spec.mixed).await,
                };
                (step, outcome)
            }));
        }
        for call in calls {
            let (step, outcome) = call.await.expect("call task");
            match (fault, outcome) {
                (Fault::Refuse, Err(MediaError::Refused(message))) => {
                    let endpoint = step.split('/').next().unwrap();
                    assert!(
                        message.contains(&format!("{endpoint} refused by the fake"))
                            && message.contains("500")
                            && message.contains("test_refusal"),
                        "{step}: {message}"
                    );
                }
                (Fault::Hang, Err(MediaError::Timeout)) => {}
                (Fault::BadJson, Err(MediaError::BadAnswer(message))) => {
                    assert!(
                        message.contains(step.split('/').next().unwrap()),
                        "{message}"
                    );
                }
                (fault, outcome) => panic!("{step} {fault:?}: {outcome:?}"),
            }
        }
    }

    // Answers of the wrong shape.
    for step in ["getLiveInfo/host", "startPull", "checkStream", "seekRecord"] {
        fake.fail(step, [Fault::WrongShape]);
    }
    let id = LiveId("host-7-1".to_owned());
    assert!(matches!(
        media.new_stream(7, "host").await,
        Err(MediaError::BadAnswer(_))
    ));
    assert!(matches!(
        media.start_distribution(&id).await,
        Err(MediaError::BadAnswer(_))
    ));
    assert!(matches!(
        media.check_stream(&id).await,
        Err(MediaError::BadAnswer(_))
    ));
    assert!(matches!(
        media.recording(&session).await,
        Err(MediaError::BadAnswer(_))
    ));

    // A refusal from something that is not the protocol's service: status and body quoted.
    let mut elsewhere = fake.config();
    elsewhere.processor_url = format!("{}/nowhere", fake.base);
    let lost = HttpMedia::new(&elsewhere);
    match lost.close_mix(&id).await {
        Err(MediaError::Refused(message)) => {
            assert!(
                message.contains("404") && message.contains("no such endpoint"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }

    // Nothing listening, an unknown host, and https (no TLS in this build): unavailable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let nobody = HttpMedia::new(&HttpMediaConfig {
        rtp_url: format!("http://127.0.0.1:{port}"),
        distributor_url: "http://no-such-host.invalid:9002".to_owned(),
        processor_url: "https://127.0.0.1:9003".to_owned(),
        timeout_secs: 1,
    });
    assert!(matches!(
        nobody.new_stream(1, "host").await,
        Err(MediaError::Unavailable(_))
    ));
    assert!(matches!(
        nobody.start_distribution(&id).await,
        Err(MediaError::Unavailable(_)) | Err(MediaError::Timeout)
    ));
    match nobody.close_mix(&id).await {
        Err(MediaError::Unavailable(message)) => assert!(message.contains("http://"), "{message}"),
        other => panic!("{other:?}"),
    }
}
