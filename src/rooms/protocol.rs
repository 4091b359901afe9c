//! The WebSocket protocol: every message a client may send and every message the server sends,
//! as JSON objects tagged by `type`. `docs/PROTOCOL.md` shows an example of each.

use serde::{Deserialize, Serialize};

use crate::media::MixLayout;
use crate::model::Ban;
use crate::server::websocket;

/// Client → server.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    JoinRoom {
        room_id: u64,
    },
    LeaveRoom,
    Danmaku {
        text: String,
    },
    /// The host takes back a danmaku in their own room (`DanmakuView::id`).
    DeleteDanmaku {
        id: u64,
    },
    Gift {
        gift: String,
        #[serde(default = "one")]
        count: u32,
    },
    Like {
        #[serde(default = "one")]
        count: u32,
    },
    StartLive {
        #[serde(default)]
        title: Option<String>,
    },
    StopLive,
    CloseRoom,
    UpdateRoom {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        layout: Option<MixLayout>,
    },
    ApplyConnect,
    AnswerConnect {
        user_id: u64,
        accept: bool,
    },
    EndConnect,
    Ping {
        #[serde(default)]
        id: Option<serde_json::Value>,
    },
}

fn one() -> u32 {
    1
}

/// Every client message type, for telling an unknown type from a malformed known one.
const CLIENT_TYPES: [&str; 14] = [
    "join_room",
    "leave_room",
    "danmaku",
    "delete_danmaku",
    "gift",
    "like",
    "start_live",
    "stop_live",
    "close_room",
    "update_room",
    "apply_connect",
    "answer_connect",
    "end_connect",
    "ping",
];

/// Why a text frame is not a client message; becomes an `error` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub code: &'static str,
    pub message: String,
}

impl ClientMessage {
    /// The message's `type`, for the `about` field of an error answering it.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMessage::JoinRoom { .. } => "join_room",
            ClientMessage::LeaveRoom => "leave_room",
            ClientMessage::Danmaku { .. } => "danmaku",
            ClientMessage::DeleteDanmaku { .. } => "delete_danmaku",
            ClientMessage::Gift { .. } => "gift",
            ClientMessage::Like { .. } => "like",
            ClientMessage::StartLive { .. } => "start_live",
            ClientMessage::StopLive => "stop_live",
            ClientMessage::CloseRoom => "close_room",
            ClientMessage::UpdateRoom { .. } => "update_room",
            ClientMessage::ApplyConnect => "apply_connect",
            ClientMessage::AnswerConnect { .. } => "answer_connect",
            ClientMessage::EndConnect => "end_connect",
            ClientMessage::Ping { .. } => "ping",
        }
    }

    pub fn parse(text: &str) -> Result<ClientMessage, Malformed> {
        serde_json::from_str(text).map_err(|e| {
            let kind = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned));
            match kind {
                Some(kind) if !CLIENT_TYPES.contains(&kind.as_str()) => Malformed {
                    code: "unknown_type",
                    message: format!("there is no message type {kind:?}"),
                },
                Some(kind) => Malformed {
                    code: "bad_message",
                    message: format!("a {kind} message is malformed: {e}"),
                },
                None => Malformed {
                    code: "bad_message",
                    message: "a message is a JSON object with a \"type\" field".to_owned(),
                },
            }
        })
    }
}

/// A user as other clients see them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Person {
    pub user_id: u64,
    pub nickname: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DanmakuView {
    /// Unique within the live session, from 1: what `danmaku_deleted` and `delete_danmaku`
    /// name.
    pub id: u64,
    pub user_id: u64,
    pub nickname: String,
    /// Sent by the room's host: anyone may take the host's nickname, nobody this mark.
    pub is_host: bool,
    pub text: String,
    /// Milliseconds since the live session started.
    pub offset_ms: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TopGiver {
    pub user_id: u64,
    pub nickname: String,
    pub value: u64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RoomPhase {
    /// Open, nobody is live (waiting for the host, or between sessions).
    Idle,
    Starting,
    Live,
    CoStreaming,
    Closing,
}

/// Server → client.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    RoomInfo {
        room_id: u64,
        name: String,
        description: String,
        host: Person,
        state: RoomPhase,
        /// Whether the host's picture is being pushed right now.
        on_air: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        watch_url: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        live_started_at: Option<u64>,
        audience: usize,
        top_givers: Vec<TopGiver>,
        recent_danmaku: Vec<DanmakuView>,
        #[serde(skip_serializing_if = "Option::is_none")]
        co_stream: Option<Person>,
        /// Only for the host: who is waiting to co-stream, in order.
        #[serde(skip_serializing_if = "Option::is_none")]
        connect_queue: Option<Vec<Person>>,
        /// Whether the receiver is the host.
        you_are_host: bool,
        /// Only for the host, while live: where OBS or ffmpeg pushes (as in `live_started`), so
        /// a reloaded console still shows it.
        #[serde(skip_serializing_if = "Option::is_none")]
        push_url: Option<String>,
    },
    LiveStarted {
        room_id: u64,
        watch_url: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// Only for the host.
        #[serde(skip_serializing_if = "Option::is_none")]
        push_url: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        live_id: Option<String>,
    },
    LiveStopped {
        room_id: u64,
    },
    RoomClosed {
        room_id: u64,
        reason: String,
    },
    WatchUrl {
        watch_url: String,
    },
    Danmaku(DanmakuView),
    /// A danmaku was taken back (by an admin or the host): clients drop the line.
    DanmakuDeleted {
        id: u64,
    },
    Gift {
        user_id: u64,
        nickname: String,
        gift: String,
        name: String,
        icon: String,
        count: u32,
        value: u64,
    },
    Like {
        user_id: u64,
        count: u32,
    },
    Audience {
        count: usize,
    },
    /// Only for the host: who is in the room besides the host, sent with `audience`.
    Viewers {
        /// Registered people, by nickname, at most `rooms.viewers_listed`.
        people: Vec<Person>,
        /// Registered people beyond the list.
        more: usize,
        /// Guests, counted only (they have no names).
        guests: usize,
    },
    ConnectRequest {
        user_id: u64,
        nickname: String,
        queue: Vec<Person>,
    },
    /// To the host, whenever the co-stream queue changes (someone answered, withdrew or left).
    ConnectQueue {
        queue: Vec<Person>,
    },
    ConnectAnswer {
        accept: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    ConnectStarted {
        host: Person,
        guest: Person,
        watch_url: String,
        /// Only for the guest: where to push the guest's own picture.
        #[serde(skip_serializing_if = "Option::is_none")]
        push_url: Option<String>,
    },
    ConnectEnded {
        watch_url: String,
    },
    RoomUpdated {
        name: String,
        description: String,
    },
    /// A stream of the room started or stopped arriving at the media plane: `stream` is
    /// `host`, `guest` or `mix`.
    OnAir {
        stream: String,
        on_air: bool,
    },
    Banned {
        scope: String,
        reason: String,
        /// Unix seconds; `null` for a ban until lifted.
        until: Option<u64>,
    },
    Unbanned {
        scope: String,
    },
    Error {
        code: String,
        message: String,
        /// The type of the message this answers, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        about: Option<String>,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<serde_json::Value>,
    },
}

impl ServerMessage {
    pub fn banned(ban: &Ban) -> Self {
        ServerMessage::Banned {
            scope: ban.scope.as_str().to_owned(),
            reason: ban.reason.clone(),
            until: ban.expires_at,
        }
    }

    pub fn error(code: &str, message: impl Into<String>, about: Option<&str>) -> Self {
        ServerMessage::Error {
            code: code.to_owned(),
            message: message.into(),
            about: about.map(str::to_owned),
        }
    }

    /// This message as a complete WebSocket text frame, serialised and framed once and shared
    /// by every receiver.
    pub fn frame(&self) -> Frame {
        let mut buf = vec![0u8; websocket::MAX_HEADER];
        self.write_json(&mut buf);
        Frame::finish(buf)
    }

    /// Appends this message's JSON text to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(out, self)
            .expect("server messages are plain data that JSON can always express");
    }
}

/// One server message as the complete WebSocket frame a writer sends as it is (a server frame is
/// unmasked, so it is the same bytes for every client); cheap to clone (the bytes are shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(pub bytes::Bytes);

impl Frame {
    /// The text frame of the payload in `buf` after its first [`websocket::MAX_HEADER`] bytes,
    /// which are left for the header.
    pub fn finish(buf: Vec<u8>) -> Frame {
        Frame(websocket::finish_frame(buf, websocket::TEXT_OPCODE))
    }

    /// The frame's payload: the JSON text of a message.
    pub fn payload(&self) -> &[u8] {
        let header = match self.0.get(1).map(|b| b & 0x7F) {
            Some(127) => 10,
            Some(126) => 4,
            _ => 2,
        };
        self.0.get(header..).unwrap_or_default()
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_messages_parse() {
        let m = ClientMessage::parse(r#"{"type":"gift","gift":"rose"}"#).unwrap();
        assert!(matches!(m, ClientMessage::Gift { count: 1, .. }));
        let m = ClientMessage::parse(r#"{"type":"answer_connect","user_id":3,"accept":true}"#);
        assert!(matches!(
            m,
            Ok(ClientMessage::AnswerConnect {
                user_id: 3,
                accept: true
            })
        ));
    }

    #[test]
    fn unknown_and_malformed_messages_are_told_apart() {
        assert_eq!(
            ClientMessage::parse(r#"{"type":"dance"}"#)
                .unwrap_err()
                .code,
            "unknown_type"
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"join_room","room_id":"x"}"#)
                .unwrap_err()
                .code,
            "bad_message"
        );
        for junk in ["", "null", "[1]", "{", r#"{"type":5}"#] {
            assert_eq!(
                ClientMessage::parse(junk).unwrap_err().code,
                "bad_message",
                "{junk}"
            );
        }
    }

    #[test]
    fn server_messages_are_tagged_snake_case() {
        let text = String::from_utf8(
            ServerMessage::Audience { count: 3 }
                .frame()
                .payload()
                .to_vec(),
        )
        .unwrap();
        assert_eq!(text, r#"{"type":"audience","count":3}"#);
    }
}
