//! The room's chat and its moderation: danmaku, gifts, likes, and bans applied to members
//! already inside.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{ChatWindow, RoomActor};
use crate::model::{
    AuditEntry, Ban, BanScope, DanmakuRemoval, GiftEntry, StoredDanmaku, UserId, UserKind,
};
use crate::rooms::protocol::{DanmakuView, RoomPhase, ServerMessage, TopGiver};
use crate::rooms::{Member, RoomsError};
use crate::store::{unix_now, ChatEntry};
use crate::text::LineProblem;

impl RoomActor {
    /// Common checks for danmaku, gifts, likes: who may chat, whether the room is live, rate.
    fn may_chat(&mut self, member: &Member, about: &str) -> bool {
        let client = member.client;
        if member.kind == UserKind::Guest {
            self.error(
                client,
                "registered_only",
                "guests can watch; register to chat",
                about,
            );
            return false;
        }
        if member
            .chat_ban
            .as_ref()
            .is_some_and(|b| b.in_force(unix_now()))
        {
            self.error(client, "chat_banned", "you are banned from chatting", about);
            return false;
        }
        if !matches!(self.phase, RoomPhase::Live | RoomPhase::CoStreaming) {
            self.error(client, "not_live", "the room is not live", about);
            return false;
        }
        let limit = self.shared.config.chat_per_window;
        let window = Duration::from_secs(self.shared.config.chat_window_secs);
        let now = Instant::now();
        let counter = self.chat_windows.entry(member.user).or_insert(ChatWindow {
            start: now,
            count: 0,
        });
        if now.duration_since(counter.start) >= window {
            *counter = ChatWindow {
                start: now,
                count: 0,
            };
        }
        if counter.count >= limit {
            self.error(
                client,
                "rate_limited",
                "you are sending too fast; wait a moment",
                about,
            );
            return false;
        }
        counter.count += 1;
        true
    }

    pub(super) fn danmaku(&mut self, member: &Member, text: String) {
        if !self.may_chat(member, "danmaku") {
            return;
        }
        let text = match crate::text::chat_line(&text, self.shared.config.danmaku_max_chars) {
            Ok(text) => text,
            Err(LineProblem::Empty) => {
                return self.error(
                    member.client,
                    "empty_danmaku",
                    "a danmaku needs some text",
                    "danmaku",
                )
            }
            Err(LineProblem::TooLong(max)) => {
                let message = format!("a danmaku has at most {max} characters");
                return self.error(member.client, "danmaku_too_long", &message, "danmaku");
            }
            Err(LineProblem::Disguised(c)) => {
                let message = format!(
                    "a danmaku may not hide or reorder its text; U+{:04X} is not allowed here",
                    u32::from(c)
                );
                return self.error(member.client, "invisible_characters", &message, "danmaku");
            }
        };
        let Some(live) = &mut self.live else { return };
        let offset_ms = live.started.elapsed().as_millis() as u64;
        let id = live.next_danmaku;
        live.next_danmaku += 1;
        let view = DanmakuView {
            id,
            user_id: member.user.0,
            nickname: member.nickname.clone(),
            is_host: member.user.0 == self.host.user_id,
            text,
            offset_ms,
        };
        let stored = StoredDanmaku {
            live: live.session.id,
            id,
            user_id: member.user,
            nickname: view.nickname.clone(),
            text: view.text.clone(),
            offset_ms,
            at: unix_now(),
        };
        self.shared.ledger(ChatEntry::Danmaku(stored), None);
        self.recent.push_back(view.clone());
        while self.recent.len() > self.shared.config.recent_danmaku {
            self.recent.pop_front();
        }
        self.broadcast(&ServerMessage::Danmaku(view));
    }

    /// Takes danmaku `id` of the live session back (an admin's, with `audit`, or the host's):
    /// off the recent list, every member told, out of the ledger. The receiver completes once
    /// the ledger has dropped it.
    pub(super) fn delete_danmaku(
        &mut self,
        id: u64,
        audit: Option<AuditEntry>,
    ) -> Result<oneshot::Receiver<()>, RoomsError> {
        let Some(live) = &mut self.live else {
            return Err(RoomsError::NotLive);
        };
        if id == 0 || id >= live.next_danmaku || !live.deleted.insert(id) {
            return Err(RoomsError::NoSuchDanmaku);
        }
        let removal = DanmakuRemoval {
            live: live.session.id,
            id,
            audit,
        };
        let (stored, done) = oneshot::channel();
        self.shared
            .ledger(ChatEntry::RemoveDanmaku(removal), Some(stored));
        self.recent.retain(|d| d.id != id);
        self.broadcast(&ServerMessage::DanmakuDeleted { id });
        Ok(done)
    }

    pub(super) fn gift(&mut self, member: &Member, gift_id: &str, count: u32) {
        let Some(gift) = self.shared.gifts.iter().find(|g| g.id == gift_id).cloned() else {
            return self.error(
                member.client,
                "unknown_gift",
                "there is no such gift",
                "gift",
            );
        };
        if !(1..=99).contains(&count) {
            return self.error(member.client, "bad_count", "send 1 to 99 at a time", "gift");
        }
        if !self.may_chat(member, "gift") {
            return;
        }
        let Some(live) = &mut self.live else { return };
        let value = gift.value * u64::from(count);
        let entry = GiftEntry {
            live: live.session.id,
            room: self.room.id,
            giver: member.user,
            gift: gift.id.clone(),
            count,
            value,
            at: unix_now(),
        };
        self.shared.ledger(ChatEntry::Gift(entry), None);
        let giver = live.top_givers.entry(member.user).or_insert(TopGiver {
            user_id: member.user.0,
            nickname: member.nickname.clone(),
            value: 0,
        });
        giver.value += value;
        self.broadcast(&ServerMessage::Gift {
            user_id: member.user.0,
            nickname: member.nickname.clone(),
            gift: gift.id,
            name: gift.name,
            icon: gift.icon,
            count,
            value,
        });
    }

    pub(super) fn like(&mut self, member: &Member, count: u32) {
        if !(1..=50).contains(&count) {
            return self.error(
                member.client,
                "bad_count",
                "send 1 to 50 likes at a time",
                "like",
            );
        }
        if !self.may_chat(member, "like") {
            return;
        }
        self.broadcast(&ServerMessage::Like {
            user_id: member.user.0,
            count,
        });
    }

    /// A ban given just now (`Rooms::add_ban`), applied at once.
    pub(super) fn apply_ban(&mut self, user: UserId, ban: Ban) {
        if !ban.in_force(unix_now()) {
            return;
        }
        let notice = ServerMessage::banned(&ban);
        match ban.scope {
            BanScope::Chat => {
                let mut here = false;
                for member in self.members.values_mut().filter(|m| m.user == user) {
                    member.chat_ban = Some(ban.clone());
                    here = true;
                }
                if !here {
                    return;
                }
                self.note_ban_expiry(ban.expires_at);
                self.send_to_user(user, &notice);
                // A chat ban covers co-streaming too: off the queue, off the stage.
                let waiting = self.connect_queue.len();
                self.connect_queue.retain(|p| p.user_id != user.0);
                if self.connect_queue.len() != waiting {
                    self.send_queue();
                }
                if self.connecting == Some(user) {
                    // `connected` then discards the co-stream being set up.
                    self.connecting = None;
                }
                if self
                    .co_stream
                    .as_ref()
                    .is_some_and(|c| c.guest.user_id == user.0)
                {
                    self.end_co_stream();
                }
            }
            BanScope::Stream if user.0 == self.host.user_id => {
                self.send_to_user(user, &notice);
                if matches!(self.phase, RoomPhase::Live | RoomPhase::CoStreaming) {
                    self.close("the host is banned from streaming");
                }
            }
            BanScope::Stream => {}
        }
    }

    /// Bans of `scope` lifted just now (`Rooms::lift_bans`): the user's members get `unbanned`
    /// and act again at once. Only members that were under such a ban hear of it.
    pub(super) fn apply_unban(&mut self, user: UserId, scope: BanScope) {
        match scope {
            BanScope::Chat => {
                let mut here = false;
                for member in self.members.values_mut().filter(|m| m.user == user) {
                    here |= member.chat_ban.take().is_some();
                }
                if here {
                    self.send_to_user(
                        user,
                        &ServerMessage::Unbanned {
                            scope: scope.as_str().to_owned(),
                        },
                    );
                }
            }
            BanScope::Stream if user.0 == self.host.user_id => {
                self.send_to_user(
                    user,
                    &ServerMessage::Unbanned {
                        scope: scope.as_str().to_owned(),
                    },
                );
            }
            BanScope::Stream => {}
        }
    }

    /// Remembers when the next member's chat ban runs out, for [`Self::expire_bans`].
    pub(super) fn note_ban_expiry(&mut self, expires_at: Option<u64>) {
        if let Some(end) = expires_at {
            self.next_ban_expiry = Some(self.next_ban_expiry.map_or(end, |next| next.min(end)));
        }
    }

    /// Chat bans that ran out: their members hear `unbanned` without waiting for their next
    /// message (which `may_chat` lets through anyway). Swept only when one is due, so a crowd
    /// costs nothing on the other ticks.
    pub(super) fn expire_bans(&mut self) {
        let now = unix_now();
        if self.next_ban_expiry.is_none_or(|next| now < next) {
            return;
        }
        self.next_ban_expiry = None;
        let mut ended = Vec::new();
        for member in self.members.values_mut() {
            if member.chat_ban.as_ref().is_some_and(|b| !b.in_force(now)) {
                member.chat_ban = None;
                ended.push(member.user);
            }
        }
        self.next_ban_expiry = self
            .members
            .values()
            .filter_map(|m| m.chat_ban.as_ref()?.expires_at)
            .min();
        ended.sort_unstable_by_key(|u| u.0);
        ended.dedup();
        for user in ended {
            self.send_to_user(
                user,
                &ServerMessage::Unbanned {
                    scope: BanScope::Chat.as_str().to_owned(),
                },
            );
        }
    }
}
