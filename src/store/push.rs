//! Push credentials of the rtmp backend: one standing `PushKey` per host, findable by its
//! `live_id`.

use redb::{ReadableDatabase, ReadableTable};

use super::codec::{decode, encode};
use super::tables::{PUSH_IDS, PUSH_KEYS};
use super::{Store, StoreError};
use crate::model::{PushKey, UserId};

impl Store {
    pub fn push_key(&self, user: UserId) -> Result<Option<PushKey>, StoreError> {
        let txn = self.db.begin_read()?;
        let key = txn.open_table(PUSH_KEYS)?.get(user.0)?;
        key.map(|v| decode(v.value(), "push key")).transpose()
    }

    /// The host whose standing `live_id` this is.
    pub fn push_owner(&self, live_id: &str) -> Result<Option<UserId>, StoreError> {
        let txn = self.db.begin_read()?;
        let owner = txn.open_table(PUSH_IDS)?.get(live_id)?;
        Ok(owner.map(|v| UserId(v.value())))
    }

    /// Stores `key` as `user`'s push key, replacing (and forgetting) any earlier one; if `keep`
    /// returns an existing key instead, nothing changes. One transaction.
    pub fn put_push_key(
        &self,
        user: UserId,
        key: PushKey,
        keep: impl FnOnce(&PushKey) -> bool,
    ) -> Result<PushKey, StoreError> {
        let txn = self.db.begin_write()?;
        let stored = {
            let mut keys = txn.open_table(PUSH_KEYS)?;
            let mut ids = txn.open_table(PUSH_IDS)?;
            let old: Option<PushKey> = keys
                .get(user.0)?
                .map(|v| decode(v.value(), "push key"))
                .transpose()?;
            match old {
                Some(old) if keep(&old) => return Ok(old),
                Some(old) => {
                    ids.remove(old.live_id.as_str())?;
                }
                None => {}
            }
            keys.insert(user.0, encode(&key).as_slice())?;
            ids.insert(key.live_id.as_str(), user.0)?;
            key
        };
        txn.commit()?;
        Ok(stored)
    }

    /// Notes a publish on `user`'s standing key.
    pub fn push_published(&self, user: UserId, at: u64, addr: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut keys = txn.open_table(PUSH_KEYS)?;
            let key: Option<PushKey> = keys
                .get(user.0)?
                .map(|v| decode(v.value(), "push key"))
                .transpose()?;
            if let Some(mut key) = key {
                key.last_publish_at = Some(at);
                key.last_publish_addr = Some(addr.to_owned());
                keys.insert(user.0, encode(&key).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}
