//! Co-streaming: applications, the host's answer, the mix, and its end.

use std::sync::Arc;

use super::lifecycle::{call, revoke};
use super::{CoStream, Internal, RoomActor};
use crate::media::{complete_push_url, LiveId, MediaError, MixLayout, MixSpec};
use crate::model::{CoStreamSpan, UserId, UserKind};
use crate::rooms::protocol::{Person, RoomPhase, ServerMessage};
use crate::rooms::{ClientId, Member, Shared};
use crate::store::unix_now;

impl RoomActor {
    pub(super) fn apply_connect(&mut self, member: &Member) {
        let client = member.client;
        if member.user.0 == self.host.user_id {
            return self.error(
                client,
                "host_cannot_apply",
                "the host is on stage already",
                "apply_connect",
            );
        }
        if member.kind == UserKind::Guest {
            return self.error(
                client,
                "registered_only",
                "register to co-stream",
                "apply_connect",
            );
        }
        if member
            .chat_ban
            .as_ref()
            .is_some_and(|b| b.in_force(unix_now()))
        {
            return self.error(
                client,
                "chat_banned",
                "you are banned from interacting",
                "apply_connect",
            );
        }
        if !matches!(self.phase, RoomPhase::Live | RoomPhase::CoStreaming) {
            return self.error(client, "not_live", "the room is not live", "apply_connect");
        }
        let on_stage = self
            .co_stream
            .as_ref()
            .is_some_and(|c| c.guest.user_id == member.user.0)
            || self.connecting == Some(member.user);
        if on_stage
            || self
                .connect_queue
                .iter()
                .any(|p| p.user_id == member.user.0)
        {
            return self.error(
                client,
                "already_applied",
                "you are already waiting or on stage",
                "apply_connect",
            );
        }
        self.connect_queue.push_back(Person {
            user_id: member.user.0,
            nickname: member.nickname.clone(),
        });
        let queue: Vec<Person> = self.connect_queue.iter().cloned().collect();
        self.tell_host(&ServerMessage::ConnectRequest {
            user_id: member.user.0,
            nickname: member.nickname.clone(),
            queue,
        });
    }

    pub(super) fn answer_connect(&mut self, client: ClientId, guest: UserId, accept: bool) {
        let Some(position) = self.connect_queue.iter().position(|p| p.user_id == guest.0) else {
            return self.error(
                client,
                "no_such_request",
                "that user is not waiting to co-stream",
                "answer_connect",
            );
        };
        if accept && (self.co_stream.is_some() || self.connecting.is_some()) {
            return self.error(
                client,
                "co_stream_busy",
                "end the current co-stream first",
                "answer_connect",
            );
        }
        if accept && self.phase != RoomPhase::Live {
            return self.error(client, "not_live", "the room is not live", "answer_connect");
        }
        let applicant = self
            .connect_queue
            .remove(position)
            .expect("position came from the queue");
        self.send_queue();
        if !accept {
            self.send_to_user(
                guest,
                &ServerMessage::ConnectAnswer {
                    accept: false,
                    reason: None,
                },
            );
            return;
        }
        let Some(live) = &self.live else { return };
        self.connecting = Some(guest);
        let shared = self.shared.clone();
        let host = live.host_stream.live_id.clone();
        let room = self.room.id.0;
        let layout = self.layout;
        self.spawn(async move {
            let result = connect_sequence(&shared, room, host, layout, applicant).await;
            Internal::Connected { guest, result }
        });
    }

    pub(super) fn connected(&mut self, guest: UserId, result: Result<CoStream, MediaError>) {
        if self.connecting != Some(guest) {
            // The live session ended, or the applicant left, meanwhile.
            if let Ok(co) = result {
                self.discard_co_stream(co);
            }
            return;
        }
        self.connecting = None;
        match result {
            Ok(co) if self.phase == RoomPhase::Live => {
                self.phase = RoomPhase::CoStreaming;
                let host = self.host.clone();
                let everyone = ServerMessage::ConnectStarted {
                    host: host.clone(),
                    guest: co.guest.clone(),
                    watch_url: co.watch_url.clone(),
                    push_url: None,
                };
                let frame = everyone.frame();
                // The guest's push URL names the server as each of its connections reached it.
                let clients: Vec<(ClientId, Option<Arc<str>>)> = self
                    .members
                    .values()
                    .map(|m| (m.client, (m.user == guest).then(|| m.rtmp_host.clone())))
                    .collect();
                for (client, guest_host) in clients {
                    let frame = match guest_host {
                        Some(rtmp_host) => ServerMessage::ConnectStarted {
                            host: host.clone(),
                            guest: co.guest.clone(),
                            watch_url: co.watch_url.clone(),
                            push_url: Some(complete_push_url(
                                &co.guest_stream.push_url,
                                &rtmp_host,
                            )),
                        }
                        .frame(),
                        None => frame.clone(),
                    };
                    self.send_frame(client, frame);
                }
                self.broadcast(&ServerMessage::WatchUrl {
                    watch_url: co.watch_url.clone(),
                });
                self.note_co_stream(&co.mixed, None);
                self.co_stream = Some(co);
                self.publish();
            }
            Ok(co) => self.discard_co_stream(co),
            Err(e) => {
                self.send_to_user(
                    guest,
                    &ServerMessage::ConnectAnswer {
                        accept: false,
                        reason: Some("media_unavailable".to_owned()),
                    },
                );
                self.tell_host(&ServerMessage::error(
                    "media_unavailable",
                    format!("could not start the co-stream: {e}"),
                    Some("answer_connect"),
                ));
            }
        }
    }

    pub(super) fn end_connect(&mut self, member: &Member, is_host: bool) {
        let is_guest = self
            .co_stream
            .as_ref()
            .is_some_and(|c| c.guest.user_id == member.user.0);
        if !is_host && !is_guest {
            // A waiting applicant may withdraw.
            let before = self.connect_queue.len();
            self.connect_queue.retain(|p| p.user_id != member.user.0);
            if self.connect_queue.len() == before {
                self.error(
                    member.client,
                    "not_co_streaming",
                    "there is no co-stream of yours to end",
                    "end_connect",
                );
            } else {
                self.send_queue();
            }
            return;
        }
        if self.co_stream.is_none() {
            return self.error(
                member.client,
                "not_co_streaming",
                "there is no co-stream to end",
                "end_connect",
            );
        }
        self.end_co_stream();
    }

    /// Back to the host's own picture: everyone is told at once; the mix is closed meanwhile.
    pub(super) fn end_co_stream(&mut self) {
        let Some(co) = self.co_stream.take() else {
            return;
        };
        if self.phase == RoomPhase::CoStreaming {
            self.phase = RoomPhase::Live;
        }
        if let Some(live) = &self.live {
            let watch_url = live.host_watch_url.clone();
            self.broadcast(&ServerMessage::ConnectEnded {
                watch_url: watch_url.clone(),
            });
            self.broadcast(&ServerMessage::WatchUrl { watch_url });
        }
        self.note_co_stream(&co.mixed, Some(unix_now()));
        self.undo_mix(co);
        self.publish();
    }

    /// Notes in the live session, here and in the store (so a crash keeps it too), that
    /// viewers watch the mix `mixed` from now on (`to` is `None`), or stopped at `to`.
    fn note_co_stream(&mut self, mixed: &LiveId, to: Option<u64>) {
        let Some(live) = &mut self.live else { return };
        let from = live
            .session
            .co_streams
            .iter()
            .find(|s| s.mixed == mixed.0)
            .map_or_else(unix_now, |s| s.from);
        let span = CoStreamSpan {
            mixed: mixed.0.clone(),
            from,
            to,
        };
        live.session.note_co_stream(span.clone());
        let id = live.session.id;
        let store = self.shared.store.clone();
        self.shared.tasks.spawn(async move {
            if let Err(e) = store.run(move |s| s.note_co_stream(id, span)).await {
                tracing::error!(session = %id, error = %e, "cannot note a co-stream");
            }
        });
    }

    fn undo_mix(&mut self, co: CoStream) {
        let shared = self.shared.clone();
        self.spawn_optional(async move {
            // Both steps are tried even if the first fails, so nothing keeps running.
            let closed = call(&shared, shared.media.close_mix(&co.mixed)).await;
            let stopped = call(&shared, shared.media.stop_distribution(&co.mixed)).await;
            match (closed, stopped) {
                (Err(e), _) => Some(Internal::MediaFailed("close the mix", e)),
                (_, Err(e)) => Some(Internal::MediaFailed("stop the mixed stream", e)),
                _ => None,
            }
        });
    }

    /// A co-stream that came up when nobody wanted it any more: the mix is closed and both
    /// one-off streams are revoked, with nobody to tell.
    fn discard_co_stream(&self, co: CoStream) {
        let shared = self.shared.clone();
        self.shared.tasks.spawn(async move {
            let _ = call(&shared, shared.media.close_mix(&co.mixed)).await;
            revoke(&shared, [&co.mixed, &co.guest_stream.live_id]).await;
        });
    }

    pub(super) fn update_layout(&mut self, layout: Option<MixLayout>) {
        let Some(layout) = layout else { return };
        self.layout = layout;
        let Some(co) = &self.co_stream else { return };
        let shared = self.shared.clone();
        let mixed = co.mixed.clone();
        self.spawn_optional(async move {
            call(&shared, shared.media.update_mix(&mixed, layout))
                .await
                .err()
                .map(|e| Internal::MediaFailed("change the layout", e))
        });
    }

    /// Tells the host who is waiting to co-stream now.
    pub(super) fn send_queue(&mut self) {
        let queue = self.connect_queue.iter().cloned().collect();
        self.tell_host(&ServerMessage::ConnectQueue { queue });
    }
}

/// Guest credentials and a mixed stream id from the rtp role, the mix from the processor, and
/// the mixed stream from the distributor. If a later step fails, it undoes what it started and
/// revokes the one-off credentials it was given before it returns, so nobody can push to them.
async fn connect_sequence(
    shared: &Shared,
    room: u64,
    host: LiveId,
    layout: MixLayout,
    guest: Person,
) -> Result<CoStream, MediaError> {
    let guest_stream = call(shared, shared.media.new_stream(room, "guest")).await?;
    let guest_live = guest_stream.live_id.clone();
    let mixed = match call(shared, shared.media.new_stream(room, "mix")).await {
        Ok(credentials) => credentials.live_id,
        Err(e) => {
            revoke(shared, [&guest_live]).await;
            return Err(e);
        }
    };
    let spec = MixSpec {
        host,
        guest: guest_live.clone(),
        mixed: mixed.clone(),
        layout,
    };
    let started = match call(shared, shared.media.start_mix(&spec)).await {
        Ok(()) => call(shared, shared.media.start_distribution(&mixed)).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(watch_url) => Ok(CoStream {
            guest,
            guest_stream,
            mixed,
            watch_url,
        }),
        Err(e) => {
            // A timeout may mean the mix did start: close it to be sure.
            let _ = call(shared, shared.media.close_mix(&mixed)).await;
            revoke(shared, [&mixed, &guest_live]).await;
            Err(e)
        }
    }
}
