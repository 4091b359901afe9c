//! What an admin does to users, rooms and recordings: bans and their lifting, a room's force
//! close, a recording's delete, an account's delete. Each action checks the admin's reason and
//! writes its audit entry with the change it makes.
//!
//! Owns: the order of an account's delete (its live room closed first, its recordings deleted
//! or kept, then the account). Calls: accounts, rooms, records, store, admin (reasons, audit
//! entries), model. Never sees HTTP: callers pass plain values and get [`ModerationError`].

use std::net::IpAddr;
use std::sync::Arc;

use super::{required_reason, AdminError, SignedAdmin};
use crate::accounts::{Accounts, AccountsError};
use crate::model::{AuditAction, AuditEntry, Ban, BanScope, RecordId, RoomId, UserId};
use crate::records::{Records, RecordsError};
use crate::rooms::{Rooms, RoomsError};
use crate::store::{unix_now, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ModerationError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    #[error(transparent)]
    Rooms(#[from] RoomsError),
    #[error(transparent)]
    Records(#[from] RecordsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T> = std::result::Result<T, ModerationError>;

/// Whether deleting an account deletes its recordings too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recordings {
    Keep,
    Delete,
}

/// The admin who acts and the address they act from, for the audit entries.
#[derive(Clone, Copy)]
pub struct Acting<'a> {
    pub admin: &'a SignedAdmin,
    pub ip: IpAddr,
}

impl Acting<'_> {
    /// The audit entry of an action of this admin, now; `target` is `kind:id`.
    pub fn audit(&self, action: AuditAction, target: String, reason: &str) -> AuditEntry {
        self.admin.audit(action, target, reason, self.ip)
    }
}

pub struct Moderation {
    store: Store,
    accounts: Arc<Accounts>,
    rooms: Arc<Rooms>,
    records: Arc<Records>,
}

impl Moderation {
    pub fn new(
        store: Store,
        accounts: Arc<Accounts>,
        rooms: Arc<Rooms>,
        records: Arc<Records>,
    ) -> Self {
        Moderation {
            store,
            accounts,
            rooms,
            records,
        }
    }

    /// Gives `user` a ban of `scope` until `until` (unix seconds; `None`: until lifted), applied
    /// at once in every open room. The reason is required: the banned user is shown it.
    pub async fn ban(
        &self,
        by: Acting<'_>,
        user: UserId,
        scope: BanScope,
        reason: &str,
        until: Option<u64>,
    ) -> Result<()> {
        let reason = required_reason(reason)?;
        let now = unix_now();
        if until.is_some_and(|until| until <= now) {
            return Err(AdminError::InvalidBanEnd(
                "a ban's end must be in the future (unix seconds), or absent for a ban until \
                 lifted"
                    .to_owned(),
            )
            .into());
        }
        let ban = Ban {
            scope,
            reason: reason.clone(),
            created_at: now,
            expires_at: until,
            lifted_at: None,
        };
        let audit = by.audit(AuditAction::Ban, ban_target(user, scope), &reason);
        self.rooms.add_ban(user, ban, Some(audit)).await?;
        Ok(())
    }

    /// Lifts every ban of `scope` in force on `user`; members in open rooms get `unbanned`.
    pub async fn lift_bans(
        &self,
        by: Acting<'_>,
        user: UserId,
        scope: BanScope,
        reason: &str,
    ) -> Result<()> {
        let reason = super::reason(reason)?;
        let audit = by.audit(AuditAction::Unban, ban_target(user, scope), &reason);
        self.rooms.lift_bans(user, scope, audit).await?;
        Ok(())
    }

    /// Closes `room` with a reason its members are shown (required): a live session ends, the
    /// room leaves the directory.
    pub async fn close_room(&self, by: Acting<'_>, room: RoomId, reason: &str) -> Result<()> {
        let reason = required_reason(reason)?;
        let audit = by.audit(AuditAction::CloseRoom, room_target(room), &reason);
        self.rooms.force_close(room, reason, audit).await?;
        Ok(())
    }

    /// Deletes a recording, whoever's it is.
    pub async fn delete_record(&self, by: Acting<'_>, id: RecordId, reason: &str) -> Result<()> {
        let reason = super::reason(reason)?;
        self.delete_record_for(by, id, &reason).await
    }

    /// Deletes the account `user`: first its room is closed if open (its members told why, as
    /// a force close tells them), then its recordings if `recordings` says so (each with its own
    /// `delete_record` audit entry, as an admin's record delete has), then the account.
    pub async fn delete_account(
        &self,
        by: Acting<'_>,
        user: UserId,
        recordings: Recordings,
        reason: &str,
    ) -> Result<()> {
        let reason = super::reason(reason)?;
        let Some(account) = self.store.run(move |s| s.user(user)).await? else {
            return Err(AdminError::NoSuchUser.into());
        };
        if let Some(room) = account.room_id {
            let audit = by.audit(AuditAction::CloseRoom, room_target(room), &reason);
            let closed = self
                .rooms
                .force_close(room, "the host's account was deleted".to_owned(), audit)
                .await;
            match closed {
                Ok(()) | Err(RoomsError::RoomNotOpen) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if recordings == Recordings::Delete {
            let records = self.store.run(|s| s.records()).await?;
            for record in records.into_iter().filter(|r| r.host == user) {
                self.delete_record_for(by, record.id, &reason).await?;
            }
        }
        let audit = by.audit(AuditAction::DeleteUser, format!("user:{user}"), &reason);
        self.accounts.delete_by_admin(user, audit).await?;
        Ok(())
    }

    /// [`Moderation::delete_record`] with a reason checked already.
    async fn delete_record_for(&self, by: Acting<'_>, id: RecordId, reason: &str) -> Result<()> {
        let audit = by.audit(AuditAction::DeleteRecord, format!("record:{id}"), reason);
        self.records.delete_as_admin(id, audit).await?;
        Ok(())
    }
}

fn room_target(room: RoomId) -> String {
    format!("room:{room}")
}

fn ban_target(user: UserId, scope: BanScope) -> String {
    format!("user:{user}:{}", scope.as_str())
}
