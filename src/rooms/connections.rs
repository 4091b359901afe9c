//! Every open WebSocket connection, by the session it was opened with and by its user, so that
//! the end of a session (logout, expiry) or of an account closes its connections at once.
//!
//! Owns: the registry. Calls: nothing; connections register themselves (`web/ws.rs`) and the
//! app tells the registry when sessions end (accounts' `SessionEnds`, wired in `app.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{ClientId, ClientLink};
use crate::model::{TokenHash, UserId};

/// The close code of a connection whose session or account ended: the client should not
/// reconnect with the same session.
pub const SESSION_ENDED: u16 = 4001;

#[derive(Default)]
pub struct Connections {
    /// std mutex: held only for a map update or a lookup, never across an `.await`.
    open: Mutex<Index>,
}

#[derive(Default)]
struct Index {
    links: HashMap<ClientId, Entry>,
    by_session: HashMap<TokenHash, HashSet<ClientId>>,
    by_user: HashMap<UserId, HashSet<ClientId>>,
}

struct Entry {
    user: UserId,
    session: TokenHash,
    link: ClientLink,
}

/// A connection's place in the registry; dropping it takes the connection out.
pub struct Registration {
    connections: Arc<Connections>,
    client: ClientId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut index = self.connections.index();
        let Some(entry) = index.links.remove(&self.client) else {
            return;
        };
        forget(&mut index.by_session, &entry.session, self.client);
        forget(&mut index.by_user, &entry.user, self.client);
    }
}

fn forget<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, HashSet<ClientId>>,
    key: &K,
    client: ClientId,
) {
    if let Some(clients) = map.get_mut(key) {
        clients.remove(&client);
        if clients.is_empty() {
            map.remove(key);
        }
    }
}

impl Connections {
    /// Adds a connection opened with `session` by `user`, for as long as the registration is
    /// kept.
    pub fn register(
        self: &Arc<Self>,
        client: ClientId,
        user: UserId,
        session: TokenHash,
        link: ClientLink,
    ) -> Registration {
        let mut index = self.index();
        index
            .by_session
            .entry(session.clone())
            .or_default()
            .insert(client);
        index.by_user.entry(user).or_default().insert(client);
        index.links.insert(
            client,
            Entry {
                user,
                session,
                link,
            },
        );
        Registration {
            connections: self.clone(),
            client,
        }
    }

    /// Closes every connection opened with `session`, telling each `reason`.
    pub fn close_session(&self, session: &TokenHash, reason: &str) {
        let index = self.index();
        let clients = index.by_session.get(session).into_iter().flatten();
        close(&index, clients, reason);
    }

    /// Closes every connection of `user`, whatever its session, telling each `reason`.
    pub fn close_user(&self, user: UserId, reason: &str) {
        let index = self.index();
        let clients = index.by_user.get(&user).into_iter().flatten();
        close(&index, clients, reason);
    }

    /// The users with at least one open connection.
    pub fn users(&self) -> HashSet<UserId> {
        self.index().by_user.keys().copied().collect()
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn close<'a>(index: &Index, clients: impl Iterator<Item = &'a ClientId>, reason: &str) {
    for client in clients {
        if let Some(entry) = index.links.get(client) {
            entry.link.close_with(SESSION_ENDED, reason);
        }
    }
}
