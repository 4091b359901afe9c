//! IP bans in the store: every ban given, in force or not (lifted and expired ones stay for the
//! record). Giving and lifting write the admin's audit entry in the same transaction. The rules
//! (what a range may be, the in-memory list the joins read) live in `crate::admin::ip_bans`.

use redb::{ReadableDatabase, ReadableTable};

use super::accounts::next_id;
use super::admin::write_audit;
use super::codec::{decode, encode};
use super::tables::*;
use super::{Store, StoreError};
use crate::model::{AuditEntry, IpBan, IpBanId};

#[derive(Debug)]
pub enum AddIpBanOutcome {
    Added(IpBan),
    /// `max_in_force` bans are in force already; nothing was stored.
    TooMany,
}

impl Store {
    /// Stores the ban `make` builds for its new id, with its audit entry, unless `max_in_force`
    /// bans are in force already (counted in the same transaction, so two admins at once cannot
    /// pass the cap together).
    pub fn add_ip_ban(
        &self,
        max_in_force: usize,
        make: impl FnOnce(IpBanId) -> (IpBan, AuditEntry),
    ) -> Result<AddIpBanOutcome, StoreError> {
        let txn = self.db.begin_write()?;
        let id = IpBanId(next_id(&txn, SEQ_IP_BAN)?);
        let (ban, audit) = make(id);
        {
            let mut table = txn.open_table(IP_BANS)?;
            let mut in_force = 0;
            for row in table.iter()? {
                let stored: IpBan = decode(row?.1.value(), "IP ban")?;
                if stored.in_force(ban.created_at) {
                    in_force += 1;
                }
            }
            if in_force >= max_in_force {
                return Ok(AddIpBanOutcome::TooMany);
            }
            table.insert(id.0, encode(&ban).as_slice())?;
        }
        write_audit(&txn, &audit)?;
        txn.commit()?;
        Ok(AddIpBanOutcome::Added(ban))
    }

    /// Marks ban `id` lifted at `audit.at`, with the audit entry; `None` (and nothing written)
    /// if there is no such ban or it is not in force any more.
    pub fn lift_ip_ban(
        &self,
        id: IpBanId,
        audit: &AuditEntry,
    ) -> Result<Option<IpBan>, StoreError> {
        let txn = self.db.begin_write()?;
        let lifted = {
            let mut table = txn.open_table(IP_BANS)?;
            let found: Option<IpBan> = table
                .get(id.0)?
                .map(|v| decode(v.value(), "IP ban"))
                .transpose()?;
            let Some(mut ban) = found.filter(|b| b.in_force(audit.at)) else {
                return Ok(None);
            };
            ban.lifted_at = Some(audit.at);
            table.insert(id.0, encode(&ban).as_slice())?;
            ban
        };
        write_audit(&txn, audit)?;
        txn.commit()?;
        Ok(Some(lifted))
    }

    /// Every IP ban ever given, newest first.
    pub fn ip_bans(&self) -> Result<Vec<IpBan>, StoreError> {
        let txn = self.db.begin_read()?;
        let mut out = Vec::new();
        for row in txn.open_table(IP_BANS)?.iter()?.rev() {
            out.push(decode(row?.1.value(), "IP ban")?);
        }
        Ok(out)
    }
}
