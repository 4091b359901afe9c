//! IP bans for guests: guests have no account to ban, so an admin bans the address (or range)
//! they come from. A ban in force stops new guest sessions from it and stops guest sessions
//! from it joining rooms; registered users are banned by account instead.
//!
//! Owns: the rules (what a range may be, how wide, how many in force) and the bans in force,
//! kept in memory so that a guest's join costs no store read; connections subscribe to
//! [`IpBans::subscribe`] to hear of a new ban and leave their room. Calls: store (IP bans, audit),
//! admin (the admin's audit entry), config (`IpNet`), calendar (the message's date).

use std::net::IpAddr;
use std::sync::{RwLock, RwLockReadGuard};

use tokio::sync::watch;

use super::SignedAdmin;
use crate::calendar::moment;
use crate::config::{Config, IpNet};
use crate::model::{AuditAction, IpBan, IpBanId};
use crate::store::{unix_now, AddIpBanOutcome, Store, StoreError};

/// The widest IPv4 range a ban may name (65,536 addresses): wider is more likely a slip (a
/// `/0` bans everyone) than a wish.
pub const MIN_V4_PREFIX: u8 = 16;
/// The widest IPv6 range a ban may name: one site's allocation.
pub const MIN_V6_PREFIX: u8 = 48;

#[derive(Debug, thiserror::Error)]
pub enum IpBanError {
    #[error("{0}")]
    InvalidRange(String),
    #[error(
        "{0} is too wide to ban: the widest range is /{MIN_V4_PREFIX} for IPv4 and \
         /{MIN_V6_PREFIX} for IPv6, so that no slip bans everyone"
    )]
    TooWide(String),
    #[error("a ban's end must be in the future (unix seconds), or absent for a ban until lifted")]
    InvalidUntil,
    #[error(
        "{0} IP bans are in force already, the most `admin.max_ip_bans` allows; lift some first"
    )]
    TooMany(usize),
    #[error("no IP ban in force has that id")]
    NotFound,
    #[error("Guests from your address are banned ({reason}), {}.", until_text(*.until))]
    Banned { reason: String, until: Option<u64> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn until_text(until: Option<u64>) -> String {
    match until {
        Some(at) => format!("until {} UTC", moment(at)),
        None => "until an admin lifts the ban".to_owned(),
    }
}

pub type Result<T> = std::result::Result<T, IpBanError>;

/// An IP address or CIDR range as an admin typed it, named by its first address; refused if it
/// is not one or is wider than [`MIN_V4_PREFIX`] / [`MIN_V6_PREFIX`].
pub fn range(text: &str) -> Result<IpNet> {
    let text = text.trim();
    // Longer than any address with a prefix: not parsed at all.
    if text.len() > 64 {
        return Err(IpBanError::InvalidRange(
            "an IP range has at most 64 characters".to_owned(),
        ));
    }
    let net: IpNet = text.parse().map_err(IpBanError::InvalidRange)?;
    let widest = if net.is_ipv4() {
        MIN_V4_PREFIX
    } else {
        MIN_V6_PREFIX
    };
    if net.prefix() < widest {
        return Err(IpBanError::TooWide(String::from(net.network())));
    }
    Ok(net.network())
}

pub struct IpBans {
    store: Store,
    max_in_force: usize,
    /// The bans in force (and maybe some that ran out since; [`IpBans::check`] skips those).
    /// A std lock: held for a scan or an update, never across an `.await`.
    in_force: RwLock<Vec<IpBan>>,
    /// Bumped after each new ban, for the connections of guests already in a room.
    added: watch::Sender<()>,
}

impl IpBans {
    /// Reads the bans in force from the store (blocking: once, at start).
    pub fn load(config: &Config, store: Store) -> std::result::Result<IpBans, StoreError> {
        let now = unix_now();
        let in_force = store
            .ip_bans()?
            .into_iter()
            .filter(|b| b.in_force(now))
            .collect();
        Ok(IpBans {
            store,
            max_in_force: config.admin.max_ip_bans,
            in_force: RwLock::new(in_force),
            added: watch::Sender::new(()),
        })
    }

    /// Refuses a guest from `ip` if a ban in force covers it, naming the ban that ends last.
    pub fn check(&self, ip: IpAddr) -> Result<()> {
        let now = unix_now();
        let bans = self.read();
        let worst = bans
            .iter()
            .filter(|b| b.in_force(now) && b.range.contains(ip))
            .max_by_key(|b| b.expires_at.unwrap_or(u64::MAX));
        match worst {
            None => Ok(()),
            Some(ban) => Err(IpBanError::Banned {
                reason: ban.reason.clone(),
                until: ban.expires_at,
            }),
        }
    }

    /// Changes each time a ban is given: a guest connection in a room checks itself again.
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.added.subscribe()
    }

    /// Bans `range` (an address or a CIDR range) for `reason` until `until` (unix seconds;
    /// `None`: until lifted), with the admin's audit entry.
    pub async fn add(
        &self,
        range_text: &str,
        reason: String,
        until: Option<u64>,
        admin: &SignedAdmin,
        ip: IpAddr,
    ) -> Result<IpBan> {
        let range = range(range_text)?;
        let now = unix_now();
        if until.is_some_and(|until| until <= now) {
            return Err(IpBanError::InvalidUntil);
        }
        let admin = admin.clone();
        let max = self.max_in_force;
        let outcome = self
            .store
            .run(move |s| {
                s.add_ip_ban(max, |id| {
                    let target = format!("ip_ban:{id}:{}", String::from(range));
                    let audit = admin.audit(AuditAction::IpBan, target, &reason, ip);
                    let ban = IpBan {
                        id,
                        range,
                        reason,
                        admin: admin.admin.name.clone(),
                        created_at: audit.at,
                        expires_at: until,
                        lifted_at: None,
                    };
                    (ban, audit)
                })
            })
            .await?;
        let ban = match outcome {
            AddIpBanOutcome::Added(ban) => ban,
            AddIpBanOutcome::TooMany => return Err(IpBanError::TooMany(max)),
        };
        {
            let mut bans = self.write();
            bans.retain(|b| b.in_force(now));
            bans.push(ban.clone());
        }
        tracing::info!(range = %String::from(ban.range), id = %ban.id, "IP banned");
        self.added.send_replace(());
        Ok(ban)
    }

    /// Lifts ban `id`, with the admin's audit entry; it stays in the history.
    pub async fn lift(
        &self,
        id: IpBanId,
        reason: &str,
        admin: &SignedAdmin,
        ip: IpAddr,
    ) -> Result<IpBan> {
        let audit = admin.audit(AuditAction::IpUnban, format!("ip_ban:{id}"), reason, ip);
        let lifted = self
            .store
            .run(move |s| s.lift_ip_ban(id, &audit))
            .await?
            .ok_or(IpBanError::NotFound)?;
        self.write().retain(|b| b.id != id);
        Ok(lifted)
    }

    /// Every ban ever given, newest first.
    pub async fn all(&self) -> Result<Vec<IpBan>> {
        Ok(self.store.run(|s| s.ip_bans()).await?)
    }

    fn read(&self) -> RwLockReadGuard<'_, Vec<IpBan>> {
        self.in_force.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<IpBan>> {
        self.in_force.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_named_by_their_first_address_and_bounded_in_width() {
        let shown = |text: &str| range(text).map(String::from);
        assert_eq!(shown("10.0.0.7").ok().as_deref(), Some("10.0.0.7"));
        assert_eq!(shown(" 10.0.0.7/24 ").ok().as_deref(), Some("10.0.0.0/24"));
        assert_eq!(shown("10.1.0.0/16").ok().as_deref(), Some("10.1.0.0/16"));
        assert_eq!(shown("fd00::1/64").ok().as_deref(), Some("fd00::/64"));
        assert_eq!(
            shown("::ffff:192.168.1.9").ok().as_deref(),
            Some("192.168.1.9")
        );
        for wide in [
            "0.0.0.0/0",
            "10.0.0.0/8",
            "10.0.0.0/15",
            "::/0",
            "fd00::/47",
        ] {
            assert!(matches!(range(wide), Err(IpBanError::TooWide(_))), "{wide}");
        }
        for bad in ["", "10.0.0", "10.0.0.0/33", "example.com", "1.2.3.4/x"] {
            assert!(
                matches!(range(bad), Err(IpBanError::InvalidRange(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            range(&"1".repeat(100_000)),
            Err(IpBanError::InvalidRange(_))
        ));
    }
}
