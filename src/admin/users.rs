//! The admin's users list and a user's detail: reading a list query as a client sent it and
//! gathering what the detail shows.

use std::collections::HashSet;

use super::{AdminError, Result};
use crate::model::{Ban, LoginEvent, Room, User, UserId};
use crate::records::Paging;
use crate::store::{unix_now, Store, UserFilter, UserOrder, UserQuery};

/// How many of a user's latest logins the detail shows.
pub const DETAIL_LOGINS: usize = 50;
/// The longest search text, in bytes: longer than any username, email or nickname can be.
const MAX_SEARCH_BYTES: usize = 256;

/// Reads `q`, `filter`, `sort`, `page` and `per_page` as a client sent them; `live_hosts` are
/// the hosts live now.
pub fn query(
    text: Option<&str>,
    filter: Option<&str>,
    sort: Option<&str>,
    paging: Paging,
    live_hosts: HashSet<UserId>,
) -> Result<UserQuery> {
    let text = text.map(str::trim).filter(|t| !t.is_empty());
    if let Some(text) = text {
        if text.len() > MAX_SEARCH_BYTES {
            return Err(AdminError::InvalidQuery(format!(
                "`q` has at most {MAX_SEARCH_BYTES} bytes; this one has {}",
                text.len()
            )));
        }
    }
    let filter = match filter.filter(|f| !f.is_empty()) {
        None | Some("all") => UserFilter::All,
        Some("verified") => UserFilter::Verified,
        Some("unverified") => UserFilter::Unverified,
        Some("guests") => UserFilter::Guests,
        Some("banned") => UserFilter::Banned,
        Some("live") => UserFilter::Live,
        Some(other) => {
            return Err(AdminError::InvalidQuery(format!(
                "`filter` is all, verified, unverified, guests, banned or live; {other:?} is not"
            )))
        }
    };
    let order = match sort.filter(|s| !s.is_empty()) {
        None | Some("newest") => UserOrder::Newest,
        Some("oldest") => UserOrder::Oldest,
        Some("last_login") => UserOrder::LastLogin,
        Some(other) => {
            return Err(AdminError::InvalidQuery(format!(
                "`sort` is newest, oldest or last_login; {other:?} is not"
            )))
        }
    };
    Ok(UserQuery {
        text: text.map(str::to_lowercase),
        filter,
        order,
        live_hosts,
        now: unix_now(),
        skip: paging.offset(),
        per_page: paging.per_page,
    })
}

/// A user as the admin's detail shows them (recordings come from `records`).
#[derive(Debug, Clone)]
pub struct UserDetail {
    pub user: User,
    pub room: Option<Room>,
    /// Every ban, in force or not, oldest first.
    pub bans: Vec<Ban>,
    /// The latest [`DETAIL_LOGINS`] logins, newest first.
    pub logins: Vec<LoginEvent>,
    /// The language tag the user's mail is written in (none for guests).
    pub language: Option<String>,
}

pub async fn detail(store: &Store, id: UserId) -> Result<UserDetail> {
    store
        .run(move |s| {
            let Some(user) = s.user(id)? else {
                return Ok(None);
            };
            let room = user.room_id.map(|room| s.room(room)).transpose()?.flatten();
            Ok(Some(UserDetail {
                room,
                bans: s.bans_of(id)?,
                logins: s.logins_of(id, DETAIL_LOGINS)?,
                language: s.user_lang(id)?,
                user,
            }))
        })
        .await?
        .ok_or(AdminError::NoSuchUser)
}
