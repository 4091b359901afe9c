//! The admin's view of the users: the list with its search, filters and order, and what a
//! user's detail shows besides the user row (login history).

use std::collections::HashSet;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::accounts::remove_unverified;
use super::admin::write_audit;
use super::codec::decode;
use super::tables::{BANS, LOGINS, PUSH_IDS, PUSH_KEYS, ROOMS, SESSIONS, USERS};
use super::{Store, StoreError};
use crate::model::{AuditEntry, Ban, LoginEvent, PushKey, Room, Session, User, UserId, UserKind};

/// Which users the list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserFilter {
    All,
    /// Registered accounts whose email is verified.
    Verified,
    /// Registered accounts whose email is not verified yet.
    Unverified,
    Guests,
    /// Users with a ban in force.
    Banned,
    /// Hosts whose room is live now (the caller names them).
    Live,
}

/// The list's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOrder {
    /// Registration, newest first.
    Newest,
    /// Registration, oldest first.
    Oldest,
    /// Last login, latest first (never logged in: last).
    LastLogin,
}

#[derive(Debug, Clone)]
pub struct UserQuery {
    /// Lower-cased; a user matches when their username, email or nickname contains it.
    pub text: Option<String>,
    pub filter: UserFilter,
    pub order: UserOrder,
    /// The hosts live now, for [`UserFilter::Live`].
    pub live_hosts: HashSet<UserId>,
    /// Unix seconds, to tell which bans are in force.
    pub now: u64,
    pub skip: usize,
    pub per_page: usize,
}

/// One page of users, each with the bans in force, and how many matched in all.
#[derive(Debug, Clone)]
pub struct UsersPage {
    pub users: Vec<(User, Vec<Ban>)>,
    pub total: u64,
}

impl UserQuery {
    fn admits(&self, user: &User, banned: &HashSet<u64>) -> bool {
        let kept = match self.filter {
            UserFilter::All => true,
            UserFilter::Verified => user.kind == UserKind::Registered && user.is_verified(),
            UserFilter::Unverified => user.kind == UserKind::Registered && !user.is_verified(),
            UserFilter::Guests => user.kind == UserKind::Guest,
            UserFilter::Banned => banned.contains(&user.id.0),
            UserFilter::Live => self.live_hosts.contains(&user.id),
        };
        kept && self.text.as_deref().is_none_or(|text| {
            [
                user.username.as_deref(),
                user.email.as_deref(),
                Some(&user.nickname),
            ]
            .into_iter()
            .flatten()
            .any(|field| field.to_lowercase().contains(text))
        })
    }
}

impl Store {
    /// The users `query` admits, in its order, one page of them. The plain list (no text, no
    /// filter, by registration) reads only its page; anything else decodes every user row.
    pub fn users_page(&self, query: &UserQuery) -> Result<UsersPage, StoreError> {
        let txn = self.db.begin_read()?;
        let users = txn.open_table(USERS)?;
        let bans = txn.open_table(BANS)?;
        let in_force = |id: UserId| -> Result<Vec<Ban>, StoreError> {
            let Some(stored) = bans.get(id.0)? else {
                return Ok(Vec::new());
            };
            let all: Vec<Ban> = decode(stored.value(), "bans")?;
            Ok(all.into_iter().filter(|b| b.in_force(query.now)).collect())
        };
        let plain = query.text.is_none()
            && query.filter == UserFilter::All
            && query.order != UserOrder::LastLogin;
        let mut page = Vec::new();
        if plain {
            // Ids grow with registration, so the table's order is the list's order.
            let rows: Box<dyn Iterator<Item = _>> = if query.order == UserOrder::Newest {
                Box::new(users.iter()?.rev())
            } else {
                Box::new(users.iter()?)
            };
            for row in rows.skip(query.skip).take(query.per_page) {
                let user: User = decode(row?.1.value(), "user")?;
                let user_bans = in_force(user.id)?;
                page.push((user, user_bans));
            }
            return Ok(UsersPage {
                users: page,
                total: users.len()?,
            });
        }
        let mut banned = HashSet::new();
        if query.filter == UserFilter::Banned {
            for row in bans.iter()? {
                let (id, stored) = row?;
                let all: Vec<Ban> = decode(stored.value(), "bans")?;
                if all.iter().any(|b| b.in_force(query.now)) {
                    banned.insert(id.value());
                }
            }
        }
        let mut matched = Vec::new();
        for row in users.iter()? {
            let user: User = decode(row?.1.value(), "user")?;
            if query.admits(&user, &banned) {
                matched.push(user);
            }
        }
        match query.order {
            UserOrder::Newest => matched.reverse(),
            UserOrder::Oldest => {}
            UserOrder::LastLogin => {
                matched.sort_by_key(|u| std::cmp::Reverse((u.last_login_at, u.id.0)));
            }
        }
        let total = matched.len() as u64;
        for user in matched.into_iter().skip(query.skip).take(query.per_page) {
            let user_bans = in_force(user.id)?;
            page.push((user, user_bans));
        }
        Ok(UsersPage { users: page, total })
    }

    /// An admin deletes the account `id`: its row and name and email, its sessions, its room,
    /// its push key and its bans, with the admin's audit entry, in one transaction. Its login
    /// events stay for the statistics; its recordings are the caller's to keep or delete. Gives
    /// the deleted user and room (their image files are the caller's to remove); `None` if there
    /// is no such user.
    pub fn delete_user(
        &self,
        id: UserId,
        audit: &AuditEntry,
    ) -> Result<Option<(User, Option<Room>)>, StoreError> {
        let txn = self.db.begin_write()?;
        let Some(user) = txn
            .open_table(USERS)?
            .get(id.0)?
            .map(|v| decode::<User>(v.value(), "user"))
            .transpose()?
        else {
            return Ok(None);
        };
        // Named for its first use; it removes any account's row, name, email and link.
        remove_unverified(&txn, &user)?;
        // A damaged session record names no user for sure: the purge forgets it, not this.
        txn.open_table(SESSIONS)?.retain(|_, value| {
            decode::<Session>(value, "session").map_or(true, |s| s.user_id != id)
        })?;
        let room = match user.room_id {
            Some(room) => txn
                .open_table(ROOMS)?
                .remove(room.0)?
                .map(|v| decode::<Room>(v.value(), "room"))
                .transpose()?,
            None => None,
        };
        let key = txn
            .open_table(PUSH_KEYS)?
            .remove(id.0)?
            .map(|v| decode::<PushKey>(v.value(), "push key"))
            .transpose()?;
        if let Some(key) = key {
            txn.open_table(PUSH_IDS)?.remove(key.live_id.as_str())?;
        }
        txn.open_table(BANS)?.remove(id.0)?;
        write_audit(&txn, audit)?;
        txn.commit()?;
        // Recordings kept outlive their host: their cards lose the host's name.
        self.refresh_host_names(id);
        Ok(Some((user, room)))
    }

    /// The latest `limit` login events of `user`, newest first. Reads the events kept
    /// (`accounts.login_events_days`) from the newest back until it has them.
    pub fn logins_of(&self, user: UserId, limit: usize) -> Result<Vec<LoginEvent>, StoreError> {
        let txn = self.db.begin_read()?;
        let mut found = Vec::new();
        for row in txn.open_table(LOGINS)?.iter()?.rev() {
            let event: LoginEvent = decode(row?.1.value(), "login event")?;
            if event.user_id == user {
                found.push(event);
                if found.len() == limit {
                    break;
                }
            }
        }
        Ok(found)
    }
}

/// 4 → 5: every user's last login (time and address) is filled from the login events kept so
/// far; from now on it is written with each login.
pub(super) fn fill_last_logins(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut last = std::collections::HashMap::new();
    for row in txn.open_table(LOGINS)?.iter()? {
        let event: LoginEvent = decode(row?.1.value(), "login event")?;
        last.insert(event.user_id.0, (event.at, event.ip));
    }
    let mut users = txn.open_table(USERS)?;
    for (id, (at, ip)) in last {
        let Some(stored) = users.get(id)? else {
            continue;
        };
        let mut user: User = decode(stored.value(), "user")?;
        drop(stored);
        user.last_login_at = Some(at);
        user.last_login_ip = ip;
        users.insert(id, super::codec::encode(&user).as_slice())?;
    }
    Ok(())
}
