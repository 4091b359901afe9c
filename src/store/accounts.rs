//! Accounts in the store: users, their name and email indexes, verification tokens, sessions,
//! rooms and login events. Each public method is one transaction; the checks that must be atomic
//! with a change (uniqueness, token state) happen inside it. Rules about what is valid live in
//! `crate::accounts`, not here.

use redb::{ReadableDatabase, ReadableTable, Table, WriteTransaction};

use super::codec::{decode, encode};
use super::tables::*;
use super::{Store, StoreError};
use crate::model::{
    LoginEvent, LoginKind, QueuedMail, Room, RoomId, Session, TokenHash, TokenState, User, UserId,
    UserKind, VerificationToken,
};

/// Seconds an expired session is remembered before the purge deletes it.
const EXPIRED_SESSION_MEMORY: u64 = 7 * 24 * 3600;

/// A message to queue, built by the caller (it knows the link the text must carry).
#[derive(Debug, Clone)]
pub struct MailDraft {
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// A registration, already validated and with its password hashed.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub now: u64,
}

/// A verification link to issue: the hash of its token and when it stops working.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub hash: TokenHash,
    pub expires_at: u64,
}

#[derive(Debug)]
pub enum RegisterOutcome {
    Created(Box<User>),
    UsernameTaken,
    EmailTaken,
}

#[derive(Debug)]
pub enum VerifyOutcome {
    /// This click verified the account (and created its room).
    Verified(User),
    AlreadyVerified,
    Expired {
        email: String,
    },
    Superseded {
        email: String,
    },
    Unknown,
}

#[derive(Debug)]
pub enum ResendOutcome {
    Queued,
    UnknownEmail,
    AlreadyVerified,
}

/// The lower-case key under which usernames and emails are unique.
pub fn index_key(value: &str) -> String {
    value.to_lowercase()
}

pub(super) fn next_id(txn: &WriteTransaction, sequence: &str) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META)?;
    let id = meta.get(sequence)?.map_or(1, |v| v.value());
    meta.insert(sequence, id + 1)?;
    Ok(id)
}

fn read_user(
    table: &impl ReadableTable<u64, &'static [u8]>,
    id: u64,
) -> Result<Option<User>, StoreError> {
    table
        .get(id)?
        .map(|v| decode(v.value(), "user"))
        .transpose()
}

fn write_user(table: &mut Table<u64, &'static [u8]>, user: &User) -> Result<(), StoreError> {
    table.insert(user.id.0, encode(user).as_slice())?;
    Ok(())
}

fn user_or_missing(user: Option<User>, id: u64) -> Result<User, StoreError> {
    user.ok_or(StoreError::Damaged {
        what: "index",
        problem: format!("an index points at user {id}, which does not exist"),
    })
}

/// Queues a mail inside the caller's transaction, so it commits (or not) with the change that
/// caused it.
pub(super) fn enqueue_mail_in(
    txn: &WriteTransaction,
    draft: MailDraft,
    now: u64,
) -> Result<QueuedMail, StoreError> {
    let id = crate::model::MailId(next_id(txn, SEQ_MAIL)?);
    let mail = QueuedMail {
        id,
        to: draft.to,
        subject: draft.subject,
        text: draft.text,
        created_at: now,
        attempts: 0,
        next_attempt_at: now,
        last_error: None,
    };
    txn.open_table(MAIL_QUEUE)?
        .insert(id.0, encode(&mail).as_slice())?;
    Ok(mail)
}

fn record_login(txn: &WriteTransaction, event: &LoginEvent) -> Result<(), StoreError> {
    let seq = next_id(txn, SEQ_LOGIN)?;
    txn.open_table(LOGINS)?
        .insert((event.at, seq), encode(event).as_slice())?;
    Ok(())
}

impl Store {
    /// Creates an unverified account, its first verification token and the mail carrying it,
    /// all in one transaction.
    pub fn register(
        &self,
        account: NewAccount,
        token: NewToken,
        mail: MailDraft,
    ) -> Result<RegisterOutcome, StoreError> {
        let txn = self.db.begin_write()?;
        let user = {
            let mut usernames = txn.open_table(USERNAMES)?;
            let mut emails = txn.open_table(EMAILS)?;
            let username_key = index_key(&account.username);
            let email_key = index_key(&account.email);
            if usernames.get(username_key.as_str())?.is_some() {
                return Ok(RegisterOutcome::UsernameTaken);
            }
            if emails.get(email_key.as_str())?.is_some() {
                return Ok(RegisterOutcome::EmailTaken);
            }
            let id = UserId(next_id(&txn, SEQ_USER)?);
            let user = User {
                id,
                kind: UserKind::Registered,
                nickname: account.username.clone(),
                username: Some(account.username),
                email: Some(account.email),
                password_hash: Some(account.password_hash),
                verified_at: None,
                created_at: account.now,
                last_seen: account.now,
                avatar: None,
                room_id: None,
                pending_verification: Some(token.hash.clone()),
            };
            usernames.insert(username_key.as_str(), id.0)?;
            emails.insert(email_key.as_str(), id.0)?;
            write_user(&mut txn.open_table(USERS)?, &user)?;
            let record = VerificationToken {
                user_id: id,
                created_at: account.now,
                expires_at: token.expires_at,
                state: TokenState::Pending,
            };
            txn.open_table(VERIFY_TOKENS)?
                .insert(token.hash.0.as_str(), encode(&record).as_slice())?;
            enqueue_mail_in(&txn, mail, account.now)?;
            user
        };
        txn.commit()?;
        Ok(RegisterOutcome::Created(Box::new(user)))
    }

    /// Decides a verification click. One write transaction, so of any number of concurrent
    /// clicks exactly one sees the token pending and verifies.
    pub fn verify(&self, hash: &TokenHash, now: u64) -> Result<VerifyOutcome, StoreError> {
        let txn = self.db.begin_write()?;
        let outcome = {
            let mut tokens = txn.open_table(VERIFY_TOKENS)?;
            let Some(mut token) = tokens
                .get(hash.0.as_str())?
                .map(|v| decode::<VerificationToken>(v.value(), "verification token"))
                .transpose()?
            else {
                return Ok(VerifyOutcome::Unknown);
            };
            let mut users = txn.open_table(USERS)?;
            let Some(mut user) = read_user(&users, token.user_id.0)? else {
                return Ok(VerifyOutcome::Unknown);
            };
            let email = user.email.clone().unwrap_or_default();
            match token.state {
                TokenState::Used => return Ok(VerifyOutcome::AlreadyVerified),
                _ if user.is_verified() => return Ok(VerifyOutcome::AlreadyVerified),
                TokenState::Superseded => return Ok(VerifyOutcome::Superseded { email }),
                TokenState::Pending if now >= token.expires_at => {
                    return Ok(VerifyOutcome::Expired { email })
                }
                TokenState::Pending => {}
            }
            token.state = TokenState::Used;
            tokens.insert(hash.0.as_str(), encode(&token).as_slice())?;
            let room = Room {
                id: RoomId(next_id(&txn, SEQ_ROOM)?),
                owner: user.id,
                name: format!("{}'s room", user.nickname),
                description: String::new(),
                cover: None,
            };
            txn.open_table(ROOMS)?
                .insert(room.id.0, encode(&room).as_slice())?;
            user.verified_at = Some(now);
            user.pending_verification = None;
            user.room_id = Some(room.id);
            write_user(&mut users, &user)?;
            VerifyOutcome::Verified(user)
        };
        txn.commit()?;
        Ok(outcome)
    }

    /// Replaces an unverified account's link with a new one and queues its mail; the old link
    /// is marked superseded in the same transaction.
    pub fn resend_verification(
        &self,
        email: &str,
        token: NewToken,
        mail: MailDraft,
        now: u64,
    ) -> Result<ResendOutcome, StoreError> {
        let txn = self.db.begin_write()?;
        {
            let Some(id) = txn
                .open_table(EMAILS)?
                .get(index_key(email).as_str())?
                .map(|v| v.value())
            else {
                return Ok(ResendOutcome::UnknownEmail);
            };
            let mut users = txn.open_table(USERS)?;
            let mut user = user_or_missing(read_user(&users, id)?, id)?;
            if user.is_verified() {
                return Ok(ResendOutcome::AlreadyVerified);
            }
            let mut tokens = txn.open_table(VERIFY_TOKENS)?;
            if let Some(old) = user.pending_verification.take() {
                let previous = tokens
                    .get(old.0.as_str())?
                    .map(|v| decode::<VerificationToken>(v.value(), "verification token"))
                    .transpose()?;
                if let Some(mut previous) = previous {
                    previous.state = TokenState::Superseded;
                    tokens.insert(old.0.as_str(), encode(&previous).as_slice())?;
                }
            }
            let record = VerificationToken {
                user_id: user.id,
                created_at: now,
                expires_at: token.expires_at,
                state: TokenState::Pending,
            };
            tokens.insert(token.hash.0.as_str(), encode(&record).as_slice())?;
            user.pending_verification = Some(token.hash);
            write_user(&mut users, &user)?;
            enqueue_mail_in(&txn, mail, now)?;
        }
        txn.commit()?;
        Ok(ResendOutcome::Queued)
    }

    /// Finds a registered user by username or email (any letter case).
    pub fn find_by_login(&self, login: &str) -> Result<Option<User>, StoreError> {
        let key = index_key(login);
        let txn = self.db.begin_read()?;
        let index = if key.contains('@') { EMAILS } else { USERNAMES };
        let Some(id) = txn.open_table(index)?.get(key.as_str())?.map(|v| v.value()) else {
            return Ok(None);
        };
        read_user(&txn.open_table(USERS)?, id)
    }

    pub fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let txn = self.db.begin_read()?;
        read_user(&txn.open_table(USERS)?, id.0)
    }

    /// Stores a new session and records the login, in one transaction.
    pub fn start_session(
        &self,
        hash: &TokenHash,
        session: &Session,
        kind: LoginKind,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(SESSIONS)?
            .insert(hash.0.as_str(), encode(session).as_slice())?;
        record_login(
            &txn,
            &LoginEvent {
                at: session.created_at,
                user_id: session.user_id,
                kind,
            },
        )?;
        txn.commit()?;
        Ok(())
    }

    /// Creates a guest user with its session, recorded as a guest login.
    pub fn create_guest(
        &self,
        nickname: String,
        hash: &TokenHash,
        now: u64,
        expires_at: u64,
    ) -> Result<User, StoreError> {
        let txn = self.db.begin_write()?;
        let id = UserId(next_id(&txn, SEQ_USER)?);
        let user = User {
            id,
            kind: UserKind::Guest,
            username: None,
            email: None,
            password_hash: None,
            nickname,
            verified_at: None,
            created_at: now,
            last_seen: now,
            avatar: None,
            room_id: None,
            pending_verification: None,
        };
        write_user(&mut txn.open_table(USERS)?, &user)?;
        let session = Session {
            user_id: id,
            created_at: now,
            expires_at,
        };
        txn.open_table(SESSIONS)?
            .insert(hash.0.as_str(), encode(&session).as_slice())?;
        record_login(
            &txn,
            &LoginEvent {
                at: now,
                user_id: id,
                kind: LoginKind::Guest,
            },
        )?;
        txn.commit()?;
        Ok(user)
    }

    /// The session with this token hash and its user, if both exist.
    pub fn session(&self, hash: &TokenHash) -> Result<Option<(Session, User)>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(session) = txn
            .open_table(SESSIONS)?
            .get(hash.0.as_str())?
            .map(|v| decode::<Session>(v.value(), "session"))
            .transpose()?
        else {
            return Ok(None);
        };
        let user = read_user(&txn.open_table(USERS)?, session.user_id.0)?;
        Ok(user.map(|user| (session, user)))
    }

    pub fn end_session(&self, hash: &TokenHash) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(SESSIONS)?.remove(hash.0.as_str())?;
        txn.commit()?;
        Ok(())
    }

    /// Applies `change` to a user and stores the result, in one transaction. Returns the
    /// changed user, or `None` if there is no such user.
    pub fn update_user(
        &self,
        id: UserId,
        change: impl FnOnce(&mut User),
    ) -> Result<Option<User>, StoreError> {
        let txn = self.db.begin_write()?;
        let updated = {
            let mut users = txn.open_table(USERS)?;
            let Some(mut user) = read_user(&users, id.0)? else {
                return Ok(None);
            };
            change(&mut user);
            write_user(&mut users, &user)?;
            user
        };
        txn.commit()?;
        Ok(Some(updated))
    }

    pub fn room(&self, id: RoomId) -> Result<Option<Room>, StoreError> {
        let txn = self.db.begin_read()?;
        txn.open_table(ROOMS)?
            .get(id.0)?
            .map(|v| decode(v.value(), "room"))
            .transpose()
    }

    /// Applies `change` to a room and stores the result, in one transaction.
    pub fn update_room(
        &self,
        id: RoomId,
        change: impl FnOnce(&mut Room),
    ) -> Result<Option<Room>, StoreError> {
        let txn = self.db.begin_write()?;
        let updated = {
            let mut rooms = txn.open_table(ROOMS)?;
            let Some(mut room) = rooms
                .get(id.0)?
                .map(|v| decode::<Room>(v.value(), "room"))
                .transpose()?
            else {
                return Ok(None);
            };
            change(&mut room);
            rooms.insert(id.0, encode(&room).as_slice())?;
            room
        };
        txn.commit()?;
        Ok(Some(updated))
    }

    /// Deletes expired sessions, and guests last seen before `guest_cutoff` (except those in
    /// `spare`) with all their sessions. Returns the deleted guests (the caller removes their
    /// files).
    pub fn purge(
        &self,
        now: u64,
        guest_cutoff: u64,
        spare: &std::collections::HashSet<UserId>,
    ) -> Result<Vec<User>, StoreError> {
        let txn = self.db.begin_write()?;
        let purged = {
            let mut users = txn.open_table(USERS)?;
            let mut idle_guests = Vec::new();
            for entry in users.iter()? {
                let (_, value) = entry?;
                let user: User = decode(value.value(), "user")?;
                if user.kind == UserKind::Guest
                    && user.last_seen < guest_cutoff
                    && !spare.contains(&user.id)
                {
                    idle_guests.push(user);
                }
            }
            for guest in &idle_guests {
                users.remove(guest.id.0)?;
            }
            let gone: std::collections::HashSet<UserId> =
                idle_guests.iter().map(|g| g.id).collect();
            let mut sessions = txn.open_table(SESSIONS)?;
            // Expired sessions are kept a week, so their tokens still answer "session expired"
            // rather than "not logged in".
            let forget_before = now.saturating_sub(EXPIRED_SESSION_MEMORY);
            sessions.retain(|_, value| match decode::<Session>(value, "session") {
                Ok(s) => s.expires_at > forget_before && !gone.contains(&s.user_id),
                Err(_) => false,
            })?;
            idle_guests
        };
        txn.commit()?;
        Ok(purged)
    }

    /// Login events from `since` (unix seconds) on, oldest first.
    pub fn logins_since(&self, since: u64) -> Result<Vec<LoginEvent>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOGINS)?;
        let mut events = Vec::new();
        for entry in table.range((since, 0)..)? {
            let (_, value) = entry?;
            events.push(decode(value.value(), "login event")?);
        }
        Ok(events)
    }
}
