//! Administration in the store: admin accounts, their sessions, the first-run setup token and
//! the audit log. Each public method is one transaction; an action that changes the store writes
//! its audit entry in the same transaction ([`write_audit`]). Rules about names, passwords and
//! who may do what live in `crate::admin`.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::accounts::{index_key, next_id};
use super::codec::{decode, encode};
use super::tables::*;
use super::{Store, StoreError};
use crate::model::{Admin, AdminSession, AuditEntry, TokenHash, User, UserKind};

/// What a first-run setup token is worth now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupState {
    /// It may create the first admin.
    Open,
    /// Unknown, or its hour is over.
    Invalid,
    /// An admin exists: setup is over, whatever the token.
    AdminExists,
}

#[derive(Debug)]
pub enum FirstAdminOutcome {
    Created,
    Refused(SetupState),
}

/// A page of the audit log, newest first, and how many entries it holds in all.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub total: u64,
}

/// Which audit entries to list: each field narrows, `None` lets everything through.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// The admin's name, whatever its case.
    pub admin: Option<String>,
    /// The action as `AuditAction::as_str` spells it.
    pub action: Option<String>,
    /// Unix seconds, inclusive.
    pub from: Option<u64>,
    /// Unix seconds, exclusive.
    pub until: Option<u64>,
}

impl AuditFilter {
    fn admits(&self, entry: &AuditEntry) -> bool {
        self.admin
            .as_ref()
            .is_none_or(|name| index_key(name) == index_key(&entry.admin))
            && self
                .action
                .as_ref()
                .is_none_or(|action| action == entry.action.as_str())
    }
}

/// Appends `entry` to the audit log inside the caller's transaction, so the entry commits (or
/// not) with the action it describes.
pub(super) fn write_audit(txn: &WriteTransaction, entry: &AuditEntry) -> Result<(), StoreError> {
    let seq = next_id(txn, SEQ_AUDIT)?;
    txn.open_table(AUDIT)?
        .insert((entry.at, seq), encode(entry).as_slice())?;
    Ok(())
}

/// Removes every session of the admin whose key is `key`, and expired ones of anybody.
fn end_sessions_of(txn: &WriteTransaction, key: &str, now: u64) -> Result<(), StoreError> {
    txn.open_table(ADMIN_SESSIONS)?.retain(|_, bytes| {
        decode::<AdminSession>(bytes, "admin session")
            .is_ok_and(|s| index_key(&s.admin) != key && s.expires_at > now)
    })?;
    Ok(())
}

/// The rule of [`SetupState`]: whether an admin exists, when the token (if stored) expires.
fn setup_state_of(admin_exists: bool, expires_at: Option<u64>, now: u64) -> SetupState {
    match expires_at {
        _ if admin_exists => SetupState::AdminExists,
        Some(until) if now < until => SetupState::Open,
        _ => SetupState::Invalid,
    }
}

impl Store {
    /// Appends `entry` to the audit log, for an action stored nowhere else (a room closed).
    pub fn add_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        write_audit(&txn, entry)?;
        txn.commit()?;
        Ok(())
    }

    /// Every admin, by name.
    pub fn admins(&self) -> Result<Vec<Admin>, StoreError> {
        let txn = self.db.begin_read()?;
        let mut out = Vec::new();
        for entry in txn.open_table(ADMINS)?.iter()? {
            out.push(decode(entry?.1.value(), "admin")?);
        }
        Ok(out)
    }

    pub fn admin(&self, name: &str) -> Result<Option<Admin>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ADMINS)?;
        let found = table.get(index_key(name).as_str())?;
        found.map(|v| decode(v.value(), "admin")).transpose()
    }

    /// Adds an admin unless one has this name (whatever its case): `false` then.
    pub fn create_admin(&self, admin: &Admin, audit: &AuditEntry) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut admins = txn.open_table(ADMINS)?;
            let key = index_key(&admin.name);
            if admins.get(key.as_str())?.is_some() {
                return Ok(false);
            }
            admins.insert(key.as_str(), encode(admin).as_slice())?;
        }
        write_audit(&txn, audit)?;
        txn.commit()?;
        Ok(true)
    }

    /// Creates the first admin with a setup token, once: the token must be open and no admin may
    /// exist; every setup token is forgotten after.
    pub fn create_first_admin(
        &self,
        setup: &TokenHash,
        admin: &Admin,
        audit: &AuditEntry,
    ) -> Result<FirstAdminOutcome, StoreError> {
        let txn = self.db.begin_write()?;
        let admin_exists = !txn.open_table(ADMINS)?.is_empty()?;
        let expires_at = txn
            .open_table(ADMIN_SETUP)?
            .get(setup.0.as_str())?
            .map(|v| v.value());
        let state = setup_state_of(admin_exists, expires_at, audit.at);
        if state != SetupState::Open {
            return Ok(FirstAdminOutcome::Refused(state));
        }
        txn.open_table(ADMINS)?
            .insert(index_key(&admin.name).as_str(), encode(admin).as_slice())?;
        txn.open_table(ADMIN_SETUP)?.retain(|_, _| false)?;
        write_audit(&txn, audit)?;
        txn.commit()?;
        Ok(FirstAdminOutcome::Created)
    }

    /// Replaces the admin's password hash and ends its sessions; `false` if there is no such
    /// admin.
    pub fn set_admin_password(
        &self,
        name: &str,
        password_hash: String,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        let key = index_key(name);
        {
            let mut admins = txn.open_table(ADMINS)?;
            let found: Option<Admin> = admins
                .get(key.as_str())?
                .map(|v| decode(v.value(), "admin"))
                .transpose()?;
            let Some(mut admin) = found else {
                return Ok(false);
            };
            admin.password_hash = password_hash;
            admins.insert(key.as_str(), encode(&admin).as_slice())?;
        }
        end_sessions_of(&txn, &key, audit.at)?;
        write_audit(&txn, audit)?;
        txn.commit()?;
        Ok(true)
    }

    /// Deletes the admin and its sessions; `false` if there is no such admin.
    pub fn delete_admin(&self, name: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        let key = index_key(name);
        if txn.open_table(ADMINS)?.remove(key.as_str())?.is_none() {
            return Ok(false);
        }
        end_sessions_of(&txn, &key, audit.at)?;
        write_audit(&txn, audit)?;
        txn.commit()?;
        Ok(true)
    }

    /// Stores `hash` as the one setup token, valid until `expires_at`, if no admin exists
    /// (`true`). Earlier tokens stop working either way.
    pub fn replace_setup_token(
        &self,
        hash: &TokenHash,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        let open = txn.open_table(ADMINS)?.is_empty()?;
        {
            let mut setup = txn.open_table(ADMIN_SETUP)?;
            setup.retain(|_, _| false)?;
            if open {
                setup.insert(hash.0.as_str(), expires_at)?;
            }
        }
        txn.commit()?;
        Ok(open)
    }

    pub fn setup_state(&self, hash: &TokenHash, now: u64) -> Result<SetupState, StoreError> {
        let txn = self.db.begin_read()?;
        let admin_exists = !txn.open_table(ADMINS)?.is_empty()?;
        let expires_at = txn
            .open_table(ADMIN_SETUP)?
            .get(hash.0.as_str())?
            .map(|v| v.value());
        Ok(setup_state_of(admin_exists, expires_at, now))
    }

    /// Starts an admin session and notes the login on the admin; expired sessions are dropped
    /// on the way, so the table holds only live ones.
    pub fn start_admin_session(
        &self,
        hash: &TokenHash,
        session: &AdminSession,
        ip: &str,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        let key = index_key(&session.admin);
        {
            let mut admins = txn.open_table(ADMINS)?;
            let found: Option<Admin> = admins
                .get(key.as_str())?
                .map(|v| decode(v.value(), "admin"))
                .transpose()?;
            if let Some(mut admin) = found {
                admin.last_login_at = Some(session.created_at);
                admin.last_login_ip = Some(ip.to_owned());
                admins.insert(key.as_str(), encode(&admin).as_slice())?;
            }
        }
        {
            let mut sessions = txn.open_table(ADMIN_SESSIONS)?;
            let now = session.created_at;
            sessions.retain(|_, bytes| {
                decode::<AdminSession>(bytes, "admin session").is_ok_and(|s| s.expires_at > now)
            })?;
            sessions.insert(hash.0.as_str(), encode(session).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The session under `hash` and its admin (`None` if either is gone).
    pub fn admin_session(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<(AdminSession, Admin)>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(bytes) = txn.open_table(ADMIN_SESSIONS)?.get(hash.0.as_str())? else {
            return Ok(None);
        };
        let session: AdminSession = decode(bytes.value(), "admin session")?;
        let admins = txn.open_table(ADMINS)?;
        let Some(admin) = admins.get(index_key(&session.admin).as_str())? else {
            return Ok(None);
        };
        let admin = decode(admin.value(), "admin")?;
        Ok(Some((session, admin)))
    }

    pub fn end_admin_session(&self, hash: &TokenHash) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(ADMIN_SESSIONS)?.remove(hash.0.as_str())?;
        txn.commit()?;
        Ok(())
    }

    /// The audit entries `filter` admits, newest first: `per_page` of them after skipping
    /// `skip`, and how many it admits in all. The log is small (admins' actions), so the filter
    /// reads every entry of its time range.
    pub fn audit_page(
        &self,
        filter: &AuditFilter,
        skip: usize,
        per_page: usize,
    ) -> Result<AuditPage, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(AUDIT)?;
        let range = (filter.from.unwrap_or(0), 0)..(filter.until.unwrap_or(u64::MAX), 0);
        let mut entries = Vec::new();
        let mut total = 0;
        for row in table.range(range)?.rev() {
            let entry: AuditEntry = decode(row?.1.value(), "audit entry")?;
            if !filter.admits(&entry) {
                continue;
            }
            if total >= skip as u64 && entries.len() < per_page {
                entries.push(entry);
            }
            total += 1;
        }
        Ok(AuditPage { entries, total })
    }

    /// How many registered accounts were created at or after `since` (unix seconds). Reads
    /// every user: the dashboard's figure, not something to ask per request of a busy page.
    pub fn registrations_since(&self, since: u64) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let mut count = 0;
        for entry in txn.open_table(USERS)?.iter()? {
            let user: User = decode(entry?.1.value(), "user")?;
            if user.kind == UserKind::Registered && user.created_at >= since {
                count += 1;
            }
        }
        Ok(count)
    }
}
