//! The `http` media backend: the seed's separate rtp, distributor and processor services,
//! called over a small JSON/HTTP protocol (docs/MEDIA-PROTOCOL.md is its reference).
//!
//! Owns: the three HTTP clients and the mapping of their failures to [`MediaError`].
//! Calls: the services at `media.http.*_url`, with ureq. ureq is blocking, so every call runs on
//! tokio's blocking pool (`spawn_blocking`), never on an async worker thread, and is bounded by
//! `media.http.timeout_secs` (ureq's global timeout: connect, send and read together), so a
//! hanging service cannot pin a blocking thread for longer than that.
//!
//! Plain `http://` only: the services sit on the same LAN as RoomManager, and ureq is built
//! without a TLS stack. An `https://` base URL gives [`MediaError::Unavailable`] at each call,
//! saying so.
//!
//! Every call is one `POST {base}/{endpoint}` with a JSON body and a JSON answer:
//! - rtp: `getLiveInfo`;
//! - distributor: `startPull`, `finishPull`, `checkStream`, `seekRecord`, `removeRecords`;
//! - processor: `newConnect`, `updateRoomInfo`, `closeRoom`.
//!
//! Failures: no connection (refused, unknown host) → [`MediaError::Unavailable`]; no answer
//! within the timeout → [`MediaError::Timeout`]; a non-2xx status → [`MediaError::Refused`] with
//! the service's `{"error": {"code", "message"}}` when it sent one; a 2xx answer that is not the
//! expected JSON → [`MediaError::BadAnswer`].

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    LiveCode, LiveId, MediaError, MediaPlane, MixLayout, MixSpec, Recording, SessionMedia,
    StreamCredentials, StreamStatus,
};
use crate::config::HttpMediaConfig;

/// The largest answer read from a service; the protocol's answers are a few hundred bytes.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// How much of a refusal's body without an `error` object is quoted in the error.
const QUOTED_BODY_CHARS: usize = 200;

/// The three services, for URLs and messages.
#[derive(Debug, Clone, Copy)]
enum Service {
    Rtp,
    Distributor,
    Processor,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Rtp => "rtp",
            Service::Distributor => "distributor",
            Service::Processor => "processor",
        }
    }
}

pub struct HttpMedia {
    rtp_url: String,
    distributor_url: String,
    processor_url: String,
    agent: ureq::Agent,
}

impl HttpMedia {
    pub fn new(config: &HttpMediaConfig) -> HttpMedia {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(config.timeout_secs.max(1))))
            // Refusals carry a JSON body worth reading: statuses are handled here, not as errors.
            .http_status_as_error(false)
            // The services are on the LAN: no HTTP(S)_PROXY detour, no redirects for a POST.
            .proxy(None)
            // A 3xx is returned as it is, and so counts as a refusal.
            .max_redirects(0)
            .user_agent(concat!("roommanager/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        HttpMedia {
            rtp_url: base(&config.rtp_url),
            distributor_url: base(&config.distributor_url),
            processor_url: base(&config.processor_url),
            agent,
        }
    }

    /// One call: `POST {base}/{endpoint}` with `body`, answered with an `A`.
    async fn post<A>(
        &self,
        service: Service,
        endpoint: &'static str,
        body: Value,
    ) -> Result<A, MediaError>
    where
        A: DeserializeOwned + Send + 'static,
    {
        let base = match service {
            Service::Rtp => &self.rtp_url,
            Service::Distributor => &self.distributor_url,
            Service::Processor => &self.processor_url,
        };
        let url = format!("{base}/{endpoint}");
        if url.starts_with("https://") {
            return Err(MediaError::Unavailable(format!(
                "the {} service is configured as {base}, but this build speaks plain http:// only \
                 (the media services are LAN services)",
                service.name()
            )));
        }
        let agent = self.agent.clone();
        let started = Instant::now();
        let answer =
            tokio::task::spawn_blocking(move || exchange(&agent, service, endpoint, &url, body))
                .await
                .unwrap_or_else(|e| {
                    Err(MediaError::Unavailable(format!(
                        "the {} call {endpoint} was cancelled: {e}",
                        service.name()
                    )))
                });
        tracing::debug!(
            service = service.name(),
            endpoint,
            ok = answer.is_ok(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "media service call"
        );
        answer
    }
}

/// A base URL without its trailing slashes, so `{base}/{endpoint}` has exactly one.
fn base(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

/// The blocking part of a call: send, read the whole answer, decode it.
fn exchange<A: DeserializeOwned>(
    agent: &ureq::Agent,
    service: Service,
    endpoint: &str,
    url: &str,
    body: Value,
) -> Result<A, MediaError> {
    let what = format!("{} {endpoint}", service.name());
    let mut response = agent
        .post(url)
        .send_json(body)
        .map_err(|e| transport_error(&what, url, e))?;
    let status = response.status();
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_string()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => MediaError::BadAnswer(format!(
                "{what}: the answer is larger than {MAX_ANSWER_BYTES} bytes"
            )),
            e => transport_error(&what, url, e),
        })?;
    if !status.is_success() {
        return Err(MediaError::Refused(refusal(&what, status.as_u16(), &text)));
    }
    // An empty body counts as `{}` (the answer of the endpoints that return nothing).
    let text = if text.trim().is_empty() { "{}" } else { &text };
    serde_json::from_str(text).map_err(|e| MediaError::BadAnswer(format!("{what}: {e}")))
}

/// A failure to reach the service or to get its answer in time.
fn transport_error(what: &str, url: &str, error: ureq::Error) -> MediaError {
    use std::io::ErrorKind;
    match error {
        ureq::Error::Timeout(_) => MediaError::Timeout,
        ureq::Error::Io(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            MediaError::Timeout
        }
        ureq::Error::Protocol(e) => {
            MediaError::BadAnswer(format!("{what} at {url} does not speak HTTP/1.1: {e}"))
        }
        e @ ureq::Error::Json(_) => MediaError::BadAnswer(format!("{what}: {e}")),
        ureq::Error::HostNotFound => {
            MediaError::Unavailable(format!("{what}: the host of {url} is not found"))
        }
        e => MediaError::Unavailable(format!("{what} at {url}: {e}")),
    }
}

/// The message of a non-2xx answer: the service's own `error.code` and `error.message` when
/// the body has them, else the status and the start of the body.
fn refusal(what: &str, status: u16, text: &str) -> String {
    #[derive(Deserialize)]
    struct Refusal {
        error: ErrorBody,
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_str::<Refusal>(text) {
        Ok(Refusal { error }) if !error.message.is_empty() || !error.code.is_empty() => {
            let code = if error.code.is_empty() {
                String::new()
            } else {
                format!(" ({})", error.code)
            };
            format!("{what} answered {status}{code}: {}", error.message)
        }
        _ => {
            let quoted: String = text.trim().chars().take(QUOTED_BODY_CHARS).collect();
            if quoted.is_empty() {
                format!("{what} answered {status}")
            } else {
                format!("{what} answered {status}: {quoted}")
            }
        }
    }
}

/// The answer of the endpoints that return nothing (`{}`); extra fields are ignored.
#[derive(Deserialize)]
struct Empty {}

#[derive(Deserialize)]
struct LiveInfo {
    live_id: String,
    live_code: String,
    push_url: String,
}

#[derive(Deserialize)]
struct Pull {
    watch_url: String,
}

#[derive(Deserialize)]
struct Check {
    status: StreamStatus,
}

#[derive(Deserialize)]
struct Seek {
    /// Required, though it may be `null`: an answer without it is not the protocol's.
    #[serde(deserialize_with = "Option::deserialize")]
    record: Option<Recording>,
}

fn non_empty(what: &str, field: &str, value: String) -> Result<String, MediaError> {
    if value.trim().is_empty() {
        Err(MediaError::BadAnswer(format!("{what}: `{field}` is empty")))
    } else {
        Ok(value)
    }
}

#[async_trait]
impl MediaPlane for HttpMedia {
    async fn new_stream(&self, room: u64, purpose: &str) -> Result<StreamCredentials, MediaError> {
        let info: LiveInfo = self
            .post(
                Service::Rtp,
                "getLiveInfo",
                json!({ "room_id": room, "purpose": purpose }),
            )
            .await?;
        let what = "rtp getLiveInfo";
        Ok(StreamCredentials {
            live_id: LiveId(non_empty(what, "live_id", info.live_id)?),
            live_code: LiveCode(info.live_code),
            push_url: non_empty(what, "push_url", info.push_url)?,
            recording_tag: None,
        })
    }

    async fn start_distribution(&self, live: &LiveId) -> Result<String, MediaError> {
        let pull: Pull = self
            .post(
                Service::Distributor,
                "startPull",
                json!({ "live_id": live.0 }),
            )
            .await?;
        non_empty("distributor startPull", "watch_url", pull.watch_url)
    }

    async fn stop_distribution(&self, live: &LiveId) -> Result<(), MediaError> {
        let _: Empty = self
            .post(
                Service::Distributor,
                "finishPull",
                json!({ "live_id": live.0 }),
            )
            .await?;
        Ok(())
    }

    async fn check_stream(&self, live: &LiveId) -> Result<StreamStatus, MediaError> {
        let check: Check = self
            .post(
                Service::Distributor,
                "checkStream",
                json!({ "live_id": live.0 }),
            )
            .await?;
        Ok(check.status)
    }

    async fn recording(&self, session: &SessionMedia) -> Result<Option<Recording>, MediaError> {
        let mixes: Vec<_> = session
            .mixes
            .iter()
            .map(|m| json!({ "live_id": m.mixed.0, "from": m.from, "to": m.to }))
            .collect();
        let seek: Seek = self
            .post(
                Service::Distributor,
                "seekRecord",
                json!({ "live_id": session.host.0, "mixes": mixes }),
            )
            .await?;
        match seek.record {
            Some(record) => {
                let url = non_empty("distributor seekRecord", "record.url", record.url)?;
                Ok(Some(Recording { url, ..record }))
            }
            None => Ok(None),
        }
    }

    async fn remove_recording(
        &self,
        stream: &LiveId,
        mixes: &[LiveId],
        _recording: &Recording,
    ) -> Result<(), MediaError> {
        // The distributor keeps one recording per stream id it served (a host's id is new each
        // session): the host's and those of the session's mixes.
        let live_ids: Vec<&str> = std::iter::once(stream)
            .chain(mixes)
            .map(|l| l.0.as_str())
            .collect();
        let _: Empty = self
            .post(
                Service::Distributor,
                "removeRecords",
                json!({ "live_ids": live_ids }),
            )
            .await?;
        Ok(())
    }

    async fn start_mix(&self, spec: &MixSpec) -> Result<(), MediaError> {
        let _: Empty = self
            .post(
                Service::Processor,
                "newConnect",
                json!({
                    "host": spec.host.0,
                    "guest": spec.guest.0,
                    "mixed": spec.mixed.0,
                    "layout": spec.layout,
                }),
            )
            .await?;
        Ok(())
    }

    async fn update_mix(&self, mixed: &LiveId, layout: MixLayout) -> Result<(), MediaError> {
        let _: Empty = self
            .post(
                Service::Processor,
                "updateRoomInfo",
                json!({ "mixed": mixed.0, "layout": layout }),
            )
            .await?;
        Ok(())
    }

    async fn close_mix(&self, mixed: &LiveId) -> Result<(), MediaError> {
        let _: Empty = self
            .post(Service::Processor, "closeRoom", json!({ "mixed": mixed.0 }))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_quotes_the_services_error_or_the_body() {
        let text = r#"{"error": {"code": "no_room", "message": "no such room"}}"#;
        assert_eq!(
            refusal("processor closeRoom", 404, text),
            "processor closeRoom answered 404 (no_room): no such room"
        );
        assert_eq!(
            refusal("rtp getLiveInfo", 502, "Bad Gateway"),
            "rtp getLiveInfo answered 502: Bad Gateway"
        );
        assert_eq!(refusal("x", 500, ""), "x answered 500");
        let long = "y".repeat(1000);
        assert!(refusal("x", 500, &long).len() < 300);
    }

    #[test]
    fn base_urls_lose_their_trailing_slashes() {
        assert_eq!(base("http://10.0.0.2:9001/"), "http://10.0.0.2:9001");
        assert_eq!(base(" http://h/api// "), "http://h/api");
    }

    #[test]
    fn answers_decode_with_extra_fields_and_null_records() {
        let seek: Seek = serde_json::from_str(r#"{"record": null, "extra": 1}"#).unwrap();
        assert!(seek.record.is_none());
        assert!(serde_json::from_str::<Seek>(r#"{"status": "on_air"}"#).is_err());
        let seek: Seek =
            serde_json::from_str(r#"{"record": {"url": "http://d/r.mp4", "duration_secs": 7}}"#)
                .unwrap();
        assert_eq!(seek.record.map(|r| r.duration_secs), Some(7));
        let check: Check = serde_json::from_str(r#"{"status": "on_air"}"#).unwrap();
        assert_eq!(check.status, StreamStatus::OnAir);
        assert!(serde_json::from_str::<Check>(r#"{"status": "live"}"#).is_err());
    }
}
