//! Rooms in the store: live sessions, the danmaku and gift ledgers, and bans. Recordings are
//! in `records.rs`.

use redb::{ReadableDatabase, ReadableTable};

use super::accounts::next_id;
use super::admin::write_audit;
use super::codec::{decode, encode};
use super::tables::*;
use super::{Store, StoreError};
use crate::model::{
    AuditEntry, Ban, BanScope, CoStreamSpan, DanmakuRemoval, GiftEntry, LiveSession, LiveSessionId,
    Record, Room, RoomId, StoredDanmaku, UserId,
};

/// One line for the chat ledgers, written in batches, in the order the rooms sent them (so a
/// removal always finds the danmaku it removes).
#[derive(Debug, Clone)]
pub enum ChatEntry {
    Danmaku(StoredDanmaku),
    Gift(GiftEntry),
    RemoveDanmaku(DanmakuRemoval),
}

impl Store {
    /// A live session whose media plane files no recordings by tag (see
    /// [`Store::start_tagged_live_session`]).
    pub fn start_live_session(
        &self,
        room: RoomId,
        host: UserId,
        title: String,
        stream: String,
        now: u64,
    ) -> Result<LiveSession, StoreError> {
        self.start_tagged_live_session(room, host, title, stream, None, now)
    }

    /// Stores a new live session of `room` on the host stream `stream`, whose recorded parts
    /// the media plane files under `recording_tag`.
    pub fn start_tagged_live_session(
        &self,
        room: RoomId,
        host: UserId,
        title: String,
        stream: String,
        recording_tag: Option<String>,
        now: u64,
    ) -> Result<LiveSession, StoreError> {
        let txn = self.db.begin_write()?;
        let room_name = match txn.open_table(ROOMS)?.get(room.0)? {
            Some(row) => decode::<Room>(row.value(), "room")?.name,
            None => String::new(),
        };
        let session = LiveSession {
            id: LiveSessionId(next_id(&txn, SEQ_LIVE)?),
            room,
            host,
            title,
            started_at: now,
            ended_at: None,
            ended_estimated: false,
            stream,
            recording_tag,
            room_name,
            settled: false,
            co_streams: Vec::new(),
        };
        txn.open_table(LIVES)?
            .insert(session.id.0, encode(&session).as_slice())?;
        txn.commit()?;
        Ok(session)
    }

    pub fn end_live_session(&self, id: LiveSessionId, now: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut lives = txn.open_table(LIVES)?;
            let session = lives
                .get(id.0)?
                .map(|v| decode::<LiveSession>(v.value(), "live session"))
                .transpose()?;
            if let Some(mut session) = session {
                session.ended_at.get_or_insert(now);
                lives.insert(id.0, encode(&session).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Notes a co-stream of a live session: a new one, or the end of one noted before (a span
    /// is known by its mixed stream; notes may arrive in either order).
    pub fn note_co_stream(&self, id: LiveSessionId, span: CoStreamSpan) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut lives = txn.open_table(LIVES)?;
            let session = lives
                .get(id.0)?
                .map(|v| decode::<LiveSession>(v.value(), "live session"))
                .transpose()?;
            if let Some(mut session) = session {
                session.note_co_stream(span);
                lives.insert(id.0, encode(&session).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub fn live_session(&self, id: LiveSessionId) -> Result<Option<LiveSession>, StoreError> {
        let txn = self.db.begin_read()?;
        let session = txn.open_table(LIVES)?.get(id.0)?;
        session
            .map(|v| decode(v.value(), "live session"))
            .transpose()
    }

    /// Live sessions whose recording was never settled (listed, or known to be missing), oldest
    /// first: what a server stopped while live, or before it listed the recording, left.
    pub fn unsettled_live_sessions(&self) -> Result<Vec<LiveSession>, StoreError> {
        let txn = self.db.begin_read()?;
        // Sessions stored before `settled` existed read as unsettled: their records tell.
        let mut recorded = std::collections::HashSet::new();
        for entry in txn.open_table(RECORDS)?.iter()? {
            let record: Record = decode(entry?.1.value(), "record")?;
            recorded.insert(record.live);
        }
        let mut out = Vec::new();
        for entry in txn.open_table(LIVES)?.iter()? {
            let session: LiveSession = decode(entry?.1.value(), "live session")?;
            if !session.settled && !recorded.contains(&session.id) {
                out.push(session);
            }
        }
        Ok(out)
    }

    /// Ends a live session that a stopped server left running, at an estimate (its last sign
    /// of life: its start, or its last danmaku or gift), and returns it with the end of its
    /// recording's window. That is the instant the host stopped when it was stored; after an
    /// estimate (now or at an earlier start) it is the start of the next session of the same
    /// stream, or, if none, `boot` (the start of this run: what comes after is this run's).
    pub fn end_abandoned_live_session(
        &self,
        id: LiveSessionId,
        boot: u64,
    ) -> Result<Option<(LiveSession, u64)>, StoreError> {
        let txn = self.db.begin_write()?;
        let ended = {
            let mut lives = txn.open_table(LIVES)?;
            let found = lives
                .get(id.0)?
                .map(|v| decode::<LiveSession>(v.value(), "live session"))
                .transpose()?;
            let Some(mut session) = found else {
                return Ok(None);
            };
            let until = match session.ended_at {
                Some(ended) if !session.ended_estimated => ended,
                _ => {
                    let mut next = boot;
                    for entry in lives.range(id.0 + 1..)? {
                        let later: LiveSession = decode(entry?.1.value(), "live session")?;
                        if later.stream == session.stream {
                            next = next.min(later.started_at);
                            break;
                        }
                    }
                    next.max(session.started_at)
                }
            };
            if session.ended_at.is_none() {
                let chat = (id.0, 0)..=(id.0, u64::MAX);
                let last_danmaku = match txn.open_table(DANMAKU)?.range(chat.clone())?.next_back() {
                    Some(entry) => decode::<StoredDanmaku>(entry?.1.value(), "danmaku")?.at,
                    None => 0,
                };
                let last_gift = match txn.open_table(GIFTS)?.range(chat)?.next_back() {
                    Some(entry) => decode::<GiftEntry>(entry?.1.value(), "gift")?.at,
                    None => 0,
                };
                session.ended_at = Some(session.started_at.max(last_danmaku).max(last_gift));
                session.ended_estimated = true;
                lives.insert(id.0, encode(&session).as_slice())?;
            }
            (session, until)
        };
        txn.commit()?;
        Ok(Some(ended))
    }

    /// Marks a live session's recording as settled without a record: the media plane had none.
    pub fn settle_live_session(&self, id: LiveSessionId) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        settle(&txn, id)?;
        txn.commit()?;
        Ok(())
    }

    /// Appends a batch of danmaku and gifts, and removes the danmaku taken back (with their
    /// admins' audit entries), in one transaction.
    pub fn append_chat(&self, batch: &[ChatEntry]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut danmaku = txn.open_table(DANMAKU)?;
            let mut gifts = txn.open_table(GIFTS)?;
            let mut added = std::collections::HashMap::<u64, i64>::new();
            for entry in batch {
                match entry {
                    ChatEntry::Danmaku(d) => {
                        let seq = next_id(&txn, SEQ_CHAT)?;
                        danmaku.insert((d.live.0, seq), encode(d).as_slice())?;
                        *added.entry(d.live.0).or_default() += 1;
                    }
                    ChatEntry::Gift(g) => {
                        let seq = next_id(&txn, SEQ_CHAT)?;
                        gifts.insert((g.live.0, seq), encode(g).as_slice())?;
                    }
                    ChatEntry::RemoveDanmaku(removal) => {
                        let removed = remove_danmaku(&mut danmaku, removal)?;
                        if removed.is_some() {
                            *added.entry(removal.live.0).or_default() -= 1;
                        }
                        let text = removed.as_ref().map(|d| d.text.as_str());
                        if let Some(audit) = removal.audit_entry(text) {
                            write_audit(&txn, &audit)?;
                        }
                    }
                }
            }
            let mut counts = txn.open_table(DANMAKU_COUNTS)?;
            for (live, n) in added {
                let before = counts.get(live)?.map(|v| v.value()).unwrap_or(0);
                counts.insert(live, before.saturating_add_signed(n))?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Every danmaku of a live session, in order.
    pub fn danmaku_of(&self, live: LiveSessionId) -> Result<Vec<StoredDanmaku>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DANMAKU)?;
        let mut out = Vec::new();
        for entry in table.range((live.0, 0)..=(live.0, u64::MAX))? {
            out.push(decode(entry?.1.value(), "danmaku")?);
        }
        Ok(out)
    }

    /// The gift ledger of a live session, in order.
    pub fn gifts_of(&self, live: LiveSessionId) -> Result<Vec<GiftEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(GIFTS)?;
        let mut out = Vec::new();
        for entry in table.range((live.0, 0)..=(live.0, u64::MAX))? {
            out.push(decode(entry?.1.value(), "gift")?);
        }
        Ok(out)
    }

    /// Every ban ever given to `user` (check `Ban::in_force`).
    pub fn bans_of(&self, user: UserId) -> Result<Vec<Ban>, StoreError> {
        let txn = self.db.begin_read()?;
        let bans = txn.open_table(BANS)?.get(user.0)?;
        bans.map(|v| decode(v.value(), "bans"))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// Adds `ban` to `user`'s bans, with the admin's audit entry when an admin gave it.
    /// `false` when there is no such user.
    pub fn add_ban(
        &self,
        user: UserId,
        ban: Ban,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        {
            if txn.open_table(USERS)?.get(user.0)?.is_none() {
                return Ok(false);
            }
            let mut table = txn.open_table(BANS)?;
            let mut bans: Vec<Ban> = table
                .get(user.0)?
                .map(|v| decode(v.value(), "bans"))
                .transpose()?
                .unwrap_or_default();
            bans.push(ban);
            table.insert(user.0, encode(&bans).as_slice())?;
            if let Some(audit) = audit {
                write_audit(&txn, audit)?;
            }
        }
        txn.commit()?;
        Ok(true)
    }

    /// Lifts every ban of `scope` in force on `user` at `now` (they stay, marked lifted), with
    /// the admin's audit entry. How many were lifted; `None` when there is no such user.
    pub fn lift_bans(
        &self,
        user: UserId,
        scope: BanScope,
        now: u64,
        audit: &AuditEntry,
    ) -> Result<Option<usize>, StoreError> {
        let txn = self.db.begin_write()?;
        let lifted = {
            if txn.open_table(USERS)?.get(user.0)?.is_none() {
                return Ok(None);
            }
            let mut table = txn.open_table(BANS)?;
            let mut bans: Vec<Ban> = table
                .get(user.0)?
                .map(|v| decode(v.value(), "bans"))
                .transpose()?
                .unwrap_or_default();
            let mut lifted = 0;
            for ban in bans
                .iter_mut()
                .filter(|b| b.scope == scope && b.in_force(now))
            {
                ban.lifted_at = Some(now);
                lifted += 1;
            }
            if lifted > 0 {
                table.insert(user.0, encode(&bans).as_slice())?;
                write_audit(&txn, audit)?;
            }
            lifted
        };
        txn.commit()?;
        Ok(Some(lifted))
    }
}

/// Takes the danmaku `removal` names out of the ledger and returns it; `None` if it is not
/// there. Searched from the session's newest danmaku back (ids grow with the ledger's order),
/// since what gets deleted is nearly always recent.
fn remove_danmaku(
    danmaku: &mut redb::Table<(u64, u64), &[u8]>,
    removal: &DanmakuRemoval,
) -> Result<Option<StoredDanmaku>, StoreError> {
    let live = removal.live.0;
    let mut found = None;
    for entry in danmaku.range((live, 0)..=(live, u64::MAX))?.rev() {
        let (key, value) = entry?;
        let stored: StoredDanmaku = decode(value.value(), "danmaku")?;
        if stored.id == removal.id {
            found = Some((key.value().1, stored));
            break;
        }
        if stored.id < removal.id {
            break;
        }
    }
    let Some((seq, stored)) = found else {
        return Ok(None);
    };
    danmaku.remove((live, seq))?;
    Ok(Some(stored))
}

/// Marks a live session's recording as settled (listed, or known to be missing).
pub(super) fn settle(txn: &redb::WriteTransaction, id: LiveSessionId) -> Result<(), StoreError> {
    let mut lives = txn.open_table(LIVES)?;
    let found = lives
        .get(id.0)?
        .map(|v| decode::<LiveSession>(v.value(), "live session"))
        .transpose()?;
    if let Some(mut session) = found {
        session.settled = true;
        lives.insert(id.0, encode(&session).as_slice())?;
    }
    Ok(())
}
