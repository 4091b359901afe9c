//! A room's live sessions: going live and stopping, closing the room, the media sequences
//! behind them, and the recording fetched when a session ends.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Internal, Live, RoomActor, Started};
use crate::media::{complete_push_url, LiveId, MediaError, MixSpan, SessionMedia};
use crate::model::{LiveSession, UserId};
use crate::rooms::protocol::{RoomPhase, ServerMessage};
use crate::rooms::{ClientId, PublishTarget, Shared};
use crate::store::unix_now;

/// Tries at a session's recording during one run (the first included).
const RECORDING_ATTEMPTS: u32 = 8;
/// The longest pause between two tries at a recording.
const RECORDING_RETRY_MAX: Duration = Duration::from_secs(3600);

impl RoomActor {
    pub(super) fn start_live(&mut self, client: ClientId, title: Option<String>) {
        match self.phase {
            RoomPhase::Idle => {}
            RoomPhase::Live | RoomPhase::CoStreaming => {
                return self.error(
                    client,
                    "already_live",
                    "the room is live already",
                    "start_live",
                )
            }
            RoomPhase::Starting => {
                return self.error(
                    client,
                    "already_starting",
                    "the room is starting",
                    "start_live",
                )
            }
            RoomPhase::Closing => {
                return self.error(client, "room_closing", "the room is closing", "start_live")
            }
        }
        let title = title
            .map(|t| {
                t.chars()
                    .filter(|c| !c.is_control())
                    .take(100)
                    .collect::<String>()
            })
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| self.room.name.clone());
        self.phase = RoomPhase::Starting;
        let shared = self.shared.clone();
        let room = self.room.id;
        let host = UserId(self.host.user_id);
        let previous = self.shared.previous_stop(room);
        self.spawn(async move {
            // A host's stream id may be the same as last session's (the rtmp backend's standing
            // key): the last session's stop must not deactivate this one's stream.
            if let Some(previous) = previous {
                previous.cancelled().await;
            }
            Internal::Started(start_sequence(&shared, room.0, host, title).await)
        });
    }

    /// Where `user` may push now: the host to the live session's stream, the co-stream guest
    /// to theirs.
    pub(super) fn publish_target(&self, user: UserId) -> Option<PublishTarget> {
        if let Some(co) = self
            .co_stream
            .as_ref()
            .filter(|co| co.guest.user_id == user.0)
        {
            return Some(PublishTarget {
                stream: "guest",
                live_id: co.guest_stream.live_id.clone(),
                push_url: co.guest_stream.push_url.clone(),
            });
        }
        let live = self.live.as_ref().filter(|_| user.0 == self.host.user_id)?;
        Some(PublishTarget {
            stream: "host",
            live_id: live.host_stream.live_id.clone(),
            push_url: live.host_stream.push_url.clone(),
        })
    }

    pub(super) fn started(&mut self, result: Result<Started, MediaError>) {
        match result {
            Ok(started) => {
                self.phase = RoomPhase::Live;
                let room_id = self.room.id.0;
                let title = Some(started.session.title.clone());
                self.broadcast_except_host(&ServerMessage::LiveStarted {
                    room_id,
                    watch_url: started.watch_url.clone(),
                    title: title.clone(),
                    push_url: None,
                    live_id: None,
                });
                let push_url = self
                    .host_client
                    .and_then(|c| self.members.get(&c))
                    .map(|m| complete_push_url(&started.host_stream.push_url, &m.rtmp_host));
                self.tell_host(&ServerMessage::LiveStarted {
                    room_id,
                    watch_url: started.watch_url.clone(),
                    title,
                    push_url,
                    live_id: Some(started.host_stream.live_id.0.clone()),
                });
                tracing::info!(room = %self.room.id, live = %started.session.id, "live");
                self.recent.clear();
                self.live = Some(Live {
                    session: started.session,
                    host_stream: started.host_stream,
                    host_watch_url: started.watch_url,
                    started: Instant::now(),
                    top_givers: HashMap::new(),
                    host_on_air: false,
                    next_danmaku: 1,
                    deleted: HashSet::new(),
                });
            }
            Err(e) => {
                self.phase = RoomPhase::Idle;
                tracing::warn!(room = %self.room.id, error = %e, "could not go live");
                self.tell_host(&ServerMessage::error(
                    "media_unavailable",
                    format!("could not go live: {e}"),
                    Some("start_live"),
                ));
            }
        }
        self.publish();
        for command in std::mem::take(&mut self.deferred) {
            self.handle(command);
        }
    }

    pub(super) fn stop_live(&mut self, client: ClientId) {
        if !matches!(self.phase, RoomPhase::Live | RoomPhase::CoStreaming) {
            return self.error(client, "not_live", "the room is not live", "stop_live");
        }
        self.finish_live();
        self.phase = RoomPhase::Idle;
        self.broadcast(&ServerMessage::LiveStopped {
            room_id: self.room.id.0,
        });
        self.publish();
    }

    /// Ends the live session in two parts, in the background. The stop part closes the mix,
    /// stops the distributions and stores the end (the instant the host stopped); the next start
    /// in this room waits for it (`Shared::previous_stop`). The recording part then waits the
    /// configured delay and asks for the recording, however long the media plane takes; nothing
    /// waits for it but a shutdown (bounded). Returns the token the stop part's end cancels.
    pub(super) fn finish_live(&mut self) -> Option<CancellationToken> {
        let co_stream = self.co_stream.take();
        self.connect_queue.clear();
        self.connecting = None;
        let mut live = self.live.take()?;
        let ended_at = unix_now();
        live.session.ended_at = Some(ended_at);
        let stopped = self.shared.stopping(self.room.id, live.session.id);
        let shared = self.shared.clone();
        let done = stopped.clone();
        let delay = Duration::from_secs(shared.config.record_delay_secs);
        self.shared.finishing.spawn(async move {
            let stop_done = done.drop_guard();
            if let Some(co) = co_stream {
                let _ = call(&shared, shared.media.close_mix(&co.mixed)).await;
                let _ = call(&shared, shared.media.stop_distribution(&co.mixed)).await;
            }
            let host_live = live.host_stream.live_id.clone();
            if let Err(e) = call(&shared, shared.media.stop_distribution(&host_live)).await {
                tracing::warn!(error = %e, "stopping the distribution failed");
            }
            let id = live.session.id;
            if let Err(e) = shared
                .store
                .run(move |s| s.end_live_session(id, ended_at))
                .await
            {
                tracing::error!(error = %e, "cannot record the end of a live session");
            }
            shared.stopped(live.session.room, id);
            drop(stop_done);
            let recording = async {
                tokio::time::sleep(delay).await;
                list_recording(&shared, live.session, ended_at).await;
            };
            tokio::select! {
                () = recording => {}
                () = shared.abandon_recordings.cancelled() => {
                    tracing::warn!(session = %id, "shutdown came first; the recording is fetched at the next start");
                }
            }
        });
        Some(stopped)
    }

    /// Closes the room: everyone is told, the room leaves the registry at once (so the host can
    /// open it again and go live), and the task ends when the live session's stop part is done.
    /// The recording goes on in the background.
    pub(super) fn close(&mut self, reason: &str) {
        if self.phase == RoomPhase::Closing {
            return;
        }
        self.phase = RoomPhase::Closing;
        self.broadcast(&ServerMessage::RoomClosed {
            room_id: self.room.id.0,
            reason: reason.to_owned(),
        });
        self.flush();
        self.members.clear();
        self.connections.clear();
        self.host_client = None;
        // The stop is registered before the room leaves the registry, so a start in the room
        // opened again always finds it.
        let stopped = self.finish_live();
        self.unlist();
        let internal = self.internal_tx.clone();
        tracing::info!(room = %self.room.id, reason, "room closing");
        self.shared.tasks.spawn(async move {
            if let Some(stopped) = stopped {
                stopped.cancelled().await;
            }
            let _ = internal.send(Internal::Closed);
        });
    }

    /// A push to one of this room's streams started or stopped.
    pub(super) fn stream_state(&mut self, live_id: &str, on_air: bool) {
        let stream = match (&mut self.live, &self.co_stream) {
            (Some(live), _) if live.host_stream.live_id.0 == live_id => {
                live.host_on_air = on_air;
                "host"
            }
            (_, Some(co)) if co.guest_stream.live_id.0 == live_id => "guest",
            (_, Some(co)) if co.mixed.0 == live_id => "mix",
            _ => return,
        };
        self.broadcast(&ServerMessage::OnAir {
            stream: stream.to_owned(),
            on_air,
        });
        self.publish();
    }
}

/// One media plane call, bounded by the configured timeout.
pub(super) async fn call<T>(
    shared: &Shared,
    work: impl Future<Output = Result<T, MediaError>>,
) -> Result<T, MediaError> {
    let limit = Duration::from_secs(shared.config.media_timeout_secs);
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or(Err(MediaError::Timeout))
}

/// A media step retried with doubling pauses (1 s, 2 s, …) up to the configured attempts.
pub(super) async fn with_retries<T, F, Fut>(
    shared: &Shared,
    step: &str,
    mut work: F,
) -> Result<T, MediaError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, MediaError>>,
{
    let attempts = shared.config.media_attempts.max(1);
    let mut pause = Duration::from_secs(1);
    for attempt in 1..=attempts {
        match call(shared, work()).await {
            Ok(value) => return Ok(value),
            Err(e) if attempt == attempts => return Err(e),
            Err(e) => {
                tracing::warn!(step, attempt, error = %e, "media plane call failed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    Err(MediaError::Timeout)
}

/// What the media plane needs to find `session`'s recording; `until` ends its window (and a
/// co-stream still open in the record).
fn session_media(session: &LiveSession, until: u64) -> SessionMedia {
    SessionMedia {
        host: LiveId(session.stream.clone()),
        recording_tag: session.recording_tag.clone(),
        started_at: session.started_at,
        ended_at: until,
        mixes: session
            .co_streams
            .iter()
            .map(|span| MixSpan {
                mixed: LiveId(span.mixed.clone()),
                from: span.from,
                to: span.to.unwrap_or(until).min(until),
            })
            .collect(),
    }
}

/// Asks the media plane for a live session's recording (the parts of the host's stream that
/// start before `until`, and its co-streams' mixes) and lists it for replay; a session the
/// media plane has no recording of is settled as such. A failure is tried again in the
/// background (see [`retry_recording`]); what never succeeds is left to the next start.
pub(in crate::rooms) async fn list_recording(
    shared: &Arc<Shared>,
    session: LiveSession,
    until: u64,
) {
    if !try_recording(shared, &session, until).await {
        shared
            .tasks
            .spawn(retry_recording(shared.clone(), session, until));
    }
}

/// One try at [`list_recording`]; `false` when it is worth trying again.
async fn try_recording(shared: &Shared, session: &LiveSession, until: u64) -> bool {
    let media = session_media(session, until);
    let live = media.host.clone();
    let id = session.id;
    let stored = match shared.media.recording(&media).await {
        Ok(Some(recording)) => {
            let session = session.clone();
            shared
                .store
                .run(move |s| {
                    s.add_record(
                        &session,
                        recording.duration_secs,
                        recording.url,
                        recording.thumbnail_url,
                    )
                })
                .await
                .map(|record| tracing::info!(record = %record.id, live = %live, "recording listed"))
        }
        Ok(None) => {
            tracing::warn!(live = %live, "the media plane has no recording");
            shared.store.run(move |s| s.settle_live_session(id)).await
        }
        Err(e) => {
            tracing::warn!(session = %id, live = %live, error = %e, "cannot fetch the recording");
            return false;
        }
    };
    match stored {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(session = %id, error = %e, "cannot list a recording");
            false
        }
    }
}

/// Tries a failed recording again during the run: after `rooms.recording_retry_secs`, then
/// twice as long each time up to an hour, [`RECORDING_ATTEMPTS`] tries in all. Shutdown ends
/// the wait (a try in progress gets the recordings' grace); the session stays unsettled, for
/// the next start.
async fn retry_recording(shared: Arc<Shared>, session: LiveSession, until: u64) {
    let mut pause = Duration::from_secs(shared.config.recording_retry_secs);
    for attempt in 2..=RECORDING_ATTEMPTS {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        tracing::info!(session = %session.id, attempt, "trying the recording again");
        let listed = tokio::select! {
            listed = try_recording(&shared, &session, until) => listed,
            () = shared.abandon_recordings.cancelled() => return,
        };
        if listed {
            return;
        }
        pause = (pause * 2).min(RECORDING_RETRY_MAX);
    }
    tracing::error!(session = %session.id, "the recording failed {RECORDING_ATTEMPTS} times; tried again at the next start");
}

/// Credentials from the rtp role, distribution from the distributor, then the live session in
/// the store. A failure after the distributor started stops it again, so nothing half-open stays.
async fn start_sequence(
    shared: &Shared,
    room: u64,
    host: UserId,
    title: String,
) -> Result<Started, MediaError> {
    // Taken before the stream is activated, so every part of the recording starts after it.
    let started_at = unix_now();
    let host_stream = with_retries(shared, "new_stream", || {
        shared.media.new_stream(room, "host")
    })
    .await?;
    let live_id = host_stream.live_id.clone();
    let watch_url = with_retries(shared, "start_distribution", || {
        shared.media.start_distribution(&live_id)
    })
    .await?;
    let stream = live_id.0.clone();
    let tag = host_stream.recording_tag.clone();
    let stored = shared
        .store
        .run(move |s| {
            let room = crate::model::RoomId(room);
            s.start_tagged_live_session(room, host, title, stream, tag, started_at)
        })
        .await;
    match stored {
        Ok(session) => Ok(Started {
            session,
            host_stream,
            watch_url,
        }),
        Err(e) => {
            let _ = call(shared, shared.media.stop_distribution(&live_id)).await;
            Err(MediaError::Unavailable(format!(
                "cannot record the live session: {e}"
            )))
        }
    }
}

/// Ends one-off streams (a co-stream's guest and mix) at the media plane, which makes their
/// credentials stop working. Each is tried; a failure is logged.
pub(super) async fn revoke<'a>(shared: &Shared, streams: impl IntoIterator<Item = &'a LiveId>) {
    for live in streams {
        if let Err(e) = call(shared, shared.media.stop_distribution(live)).await {
            tracing::warn!(live = %live, error = %e, "cannot revoke a one-off stream");
        }
    }
}
