//! `GET /ws/publish?room=ID`: going live from the browser. The page's binary frames are its
//! `MediaRecorder`'s WebM/Matroska bytes, handed to a `media::browser::BrowserPush`; the server
//! answers with text frames: `publish_status {state, bytes, dropped}` every second and an
//! `error` before it closes the socket for a reason of its own.
//!
//! Authenticated like `/ws` (session and origin), registered with the app's connections so the
//! end of the session ends the push; the caller must be the room's live host or its co-stream
//! guest on stage, and a stream has one browser publisher at a time.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde_json::json;
use tokio::time::{Instant, MissedTickBehavior};

use crate::accounts::SignedIn;
use crate::app::App;
use crate::media::browser::{BrowserPush, Claim, PublishError};
use crate::media::complete_push_url;
use crate::model::RoomId;
use crate::rooms::protocol::ServerMessage;
use crate::rooms::ClientLink;

use super::error::ApiError;
use super::records::Query;
use super::ws::{new_client_id, signed_socket};
use super::ProxiedSlot;

/// How often the page hears how its push goes.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// The close code of a push the server ended (the reason is in the `error` before it).
const PUSH_ENDED: u16 = 4002;

pub async fn publish(
    State(app): State<Arc<App>>,
    proxied: Option<Extension<ProxiedSlot>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let config = app.config.media.browser.clone();
    if !config.enabled {
        return Err(PublishError::Disabled.into());
    }
    let who = signed_socket(&app, &headers).await?;
    let room = Query::of(query).get("room").unwrap_or_default().to_owned();
    let room = room.parse::<u64>().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "`room` must be the id of the room to publish to",
        )
    })?;
    let target = app.rooms.publish_target(RoomId(room), who.user.id).await?;
    let claim = app.publishers.claim(&target.live_id)?;
    // RoomManager pushes from this machine: an open host is filled with the local RTMP address.
    let url = complete_push_url(&target.push_url, &app.site.local_rtmp_host());
    tracing::info!(room, user = %who.user.id, stream = target.stream, "browser push opened");
    let push = BrowserPush::new(config.clone(), url);
    let tracked = app.clone();
    Ok(upgrade
        .max_message_size(config.max_frame_bytes)
        .max_frame_size(config.max_frame_bytes)
        .on_upgrade(move |socket| {
            tracked.track(async move {
                pump(app, who, socket, push, claim).await;
                drop(proxied);
            })
        }))
}

/// Feeds the socket's frames to the push until either ends, the session ends, or the page
/// falls silent for `media.browser.idle_secs`.
async fn pump(
    app: Arc<App>,
    who: SignedIn,
    mut socket: WebSocket,
    mut push: BrowserPush,
    claim: Claim,
) {
    let client = new_client_id();
    // Only for the session's end to reach this socket: nothing is ever queued on it.
    let (link, _frames) = ClientLink::new(1);
    let registration = app
        .sockets
        .register(client, who.user.id, who.session.clone(), link.clone());
    let idle = Duration::from_secs(app.config.media.browser.idle_secs);
    let mut last_bytes = Instant::now();
    let mut ticks = tokio::time::interval(STATUS_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let ended: Option<(&str, String)> = loop {
        tokio::select! {
            frame = socket.recv() => match frame {
                Some(Ok(Message::Binary(chunk))) => {
                    last_bytes = Instant::now();
                    if let Err(e) = push.accept(chunk) {
                        let e = ApiError::from(e);
                        break Some((e.code, e.message));
                    }
                }
                Some(Ok(Message::Text(_))) => {
                    break Some(("bad_message", "send the stream as binary frames".to_owned()));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break None,
            },
            why = push.ended() => break Some(("push_failed", format!("the push ended: {why}"))),
            () = link.closing() => break Some(("session_ended", "the session ended".to_owned())),
            _ = ticks.tick() => {
                if last_bytes.elapsed() >= idle {
                    break Some(("idle", format!("nothing arrived for {} s", idle.as_secs())));
                }
                if send_json(&mut socket, &status(&push)).await.is_err() {
                    break None;
                }
            }
        }
    };
    push.stop().await;
    drop(claim);
    drop(registration);
    tracing::info!(user = %who.user.id, ended = ?ended, "browser push closed");
    let _ = send_json(&mut socket, &status(&push)).await;
    if let Some((code, message)) = ended {
        let error = ServerMessage::error(code, message, None);
        let _ = send_json(&mut socket, &error).await;
        let close = CloseFrame {
            code: PUSH_ENDED,
            reason: Utf8Bytes::from(code.to_owned()),
        };
        let _ = socket.send(Message::Close(Some(close))).await;
    }
}

fn status(push: &BrowserPush) -> serde_json::Value {
    let status = push.status();
    json!({"type": "publish_status", "state": status.state, "bytes": status.bytes,
           "dropped": status.dropped})
}

async fn send_json(
    socket: &mut WebSocket,
    value: &impl serde::Serialize,
) -> Result<(), axum::Error> {
    let text = serde_json::to_string(value).expect("server messages always serialise");
    socket.send(Message::Text(text.into())).await
}
