//! Rooms in the store: live sessions, the danmaku and gift ledgers, bans and recordings.

use redb::{ReadableDatabase, ReadableTable};

use super::accounts::next_id;
use super::codec::{decode, encode};
use super::tables::*;
use super::{Store, StoreError};
use crate::model::{
    Ban, GiftEntry, LiveSession, LiveSessionId, Record, RecordId, RoomId, StoredDanmaku, UserId,
};

/// One line for the chat ledgers, written in batches.
#[derive(Debug, Clone)]
pub enum ChatEntry {
    Danmaku(StoredDanmaku),
    Gift(GiftEntry),
}

impl Store {
    pub fn start_live_session(
        &self,
        room: RoomId,
        host: UserId,
        title: String,
        stream: String,
        now: u64,
    ) -> Result<LiveSession, StoreError> {
        let txn = self.db.begin_write()?;
        let session = LiveSession {
            id: LiveSessionId(next_id(&txn, SEQ_LIVE)?),
            room,
            host,
            title,
            started_at: now,
            ended_at: None,
            stream,
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

    /// Appends a batch of danmaku and gifts in one transaction.
    pub fn append_chat(&self, batch: &[ChatEntry]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut danmaku = txn.open_table(DANMAKU)?;
            let mut gifts = txn.open_table(GIFTS)?;
            for entry in batch {
                let seq = next_id(&txn, SEQ_CHAT)?;
                match entry {
                    ChatEntry::Danmaku(d) => {
                        danmaku.insert((d.live.0, seq), encode(d).as_slice())?;
                    }
                    ChatEntry::Gift(g) => {
                        gifts.insert((g.live.0, seq), encode(g).as_slice())?;
                    }
                }
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

    pub fn add_ban(&self, user: UserId, ban: Ban) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(BANS)?;
            let mut bans: Vec<Ban> = table
                .get(user.0)?
                .map(|v| decode(v.value(), "bans"))
                .transpose()?
                .unwrap_or_default();
            bans.push(ban);
            table.insert(user.0, encode(&bans).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Lists a live session's recording for replay.
    pub fn add_record(
        &self,
        session: &LiveSession,
        duration_secs: u64,
        url: String,
    ) -> Result<Record, StoreError> {
        let txn = self.db.begin_write()?;
        let record = Record {
            id: RecordId(next_id(&txn, SEQ_RECORD)?),
            room: session.room,
            host: session.host,
            live: session.id,
            title: session.title.clone(),
            started_at: session.started_at,
            duration_secs,
            url,
        };
        txn.open_table(RECORDS)?
            .insert(record.id.0, encode(&record).as_slice())?;
        txn.commit()?;
        Ok(record)
    }

    /// Every record, oldest first.
    pub fn records(&self) -> Result<Vec<Record>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RECORDS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            out.push(decode(entry?.1.value(), "record")?);
        }
        Ok(out)
    }
}
