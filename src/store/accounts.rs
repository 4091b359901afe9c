//! Accounts in the store: users, their name and email indexes, verification tokens, sessions,
//! rooms and login events. Each public method is one transaction; the checks that must be atomic
//! with a change (uniqueness, token state) happen inside it. Rules about what is valid live in
//! `crate::accounts`, not here.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, WriteTransaction};

use super::admin::write_audit;
use super::codec::{decode, encode};
use super::stats::LoginRollups;
use super::tables::*;
use super::{Store, StoreError};
use crate::model::{
    AuditEntry, LoginEvent, LoginKind, QueuedMail, Room, RoomId, Session, TokenHash, TokenState,
    User, UserId, UserKind, VerificationToken,
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
    /// The language tag its mail is written in.
    pub lang: String,
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
    /// An unverified account holds the username until `until` (unix seconds).
    UsernamePending {
        until: u64,
    },
    /// An unverified account holds the email until `until` (unix seconds).
    EmailPending {
        until: u64,
    },
}

#[derive(Debug)]
pub enum VerifyOutcome {
    /// This click verified the account (and created its room).
    Verified(User),
    AlreadyVerified,
    Expired {
        username: String,
        email: String,
    },
    Superseded {
        username: String,
        email: String,
    },
    Unknown,
}

#[derive(Debug)]
pub enum ResendOutcome {
    Queued,
    /// No account has both this username and this email.
    UnknownAccount,
    AlreadyVerified,
}

/// What an admin's "mark verified" found.
#[derive(Debug)]
pub enum MarkVerifiedOutcome {
    Verified(Box<User>),
    /// No registered account has this id.
    Unknown,
    AlreadyVerified,
}

/// What the purge deletes: the caller's rules, as cut-off times in unix seconds.
#[derive(Debug, Clone)]
pub struct PurgeRules {
    pub now: u64,
    /// Guests last seen before this are deleted, unless they are in `spare_guests`.
    pub guests_seen_before: u64,
    /// Guests with an open connection: not idle, however long ago they were last seen.
    pub spare_guests: std::collections::HashSet<UserId>,
    /// Verification links (and the unverified accounts whose newest link it is) that expired
    /// before this are deleted.
    pub links_expired_before: u64,
    /// Login events before this are deleted.
    pub logins_before: u64,
}

/// What one purge deleted.
#[derive(Debug, Default)]
pub struct Purged {
    /// The deleted guests (the caller removes their files).
    pub guests: Vec<User>,
    pub unverified: usize,
    pub links: usize,
    pub login_events: usize,
}

/// Who holds a username or an email that a registration asks for.
enum Holder {
    Nobody,
    Verified,
    /// An unverified account, still within its hold.
    Waiting {
        until: u64,
    },
    /// An unverified account whose hold is over: a new registration replaces it.
    Lapsed(Box<User>),
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

/// Stores a login event, counts it in the roll-ups and keeps it as the user's last login.
fn record_login(txn: &WriteTransaction, event: &LoginEvent) -> Result<(), StoreError> {
    let seq = next_id(txn, SEQ_LOGIN)?;
    txn.open_table(LOGINS)?
        .insert((event.at, seq), encode(event).as_slice())?;
    let mut users = txn.open_table(USERS)?;
    if let Some(mut user) = read_user(&users, event.user_id.0)? {
        user.last_login_at = Some(event.at);
        user.last_login_ip.clone_from(&event.ip);
        write_user(&mut users, &user)?;
    }
    drop(users);
    LoginRollups::open(txn)?.count(event)
}

/// How many entries `remove` took out of `table`.
fn removed_count<K: redb::Key + 'static, V: redb::Value + 'static>(
    table: &mut Table<K, V>,
    remove: impl FnOnce(&mut Table<K, V>) -> Result<(), redb::StorageError>,
) -> Result<usize, StoreError> {
    let before = table.len()?;
    remove(table)?;
    let removed = before.saturating_sub(table.len()?);
    Ok(usize::try_from(removed).unwrap_or(usize::MAX))
}

/// Deletes an unverified account with its index entries and its newest link, inside the
/// caller's transaction (its older links then lead nowhere and read as unknown). Returns false
/// if it was gone already. An unverified account has no session, room or files to clean up.
pub(super) fn remove_unverified(txn: &WriteTransaction, user: &User) -> Result<bool, StoreError> {
    if txn.open_table(USERS)?.remove(user.id.0)?.is_none() {
        return Ok(false);
    }
    for (index, value) in [(USERNAMES, &user.username), (EMAILS, &user.email)] {
        let Some(key) = value.as_deref().map(index_key) else {
            continue;
        };
        let mut table = txn.open_table(index)?;
        if table.get(key.as_str())?.map(|v| v.value()) == Some(user.id.0) {
            table.remove(key.as_str())?;
        }
    }
    if let Some(link) = &user.pending_verification {
        txn.open_table(VERIFY_TOKENS)?.remove(link.0.as_str())?;
    }
    txn.open_table(USER_LANGS)?.remove(user.id.0)?;
    Ok(true)
}

/// Marks `user` verified now and gives them their room (the caller writes the user row).
fn make_verified(txn: &WriteTransaction, user: &mut User, now: u64) -> Result<(), StoreError> {
    let room = Room {
        id: RoomId(next_id(txn, SEQ_ROOM)?),
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
    Ok(())
}

impl Store {
    /// Creates an unverified account, its first verification token and the mail carrying it,
    /// all in one transaction. An unverified account holds its username and email for
    /// `hold_secs` after it registered; past that, this registration replaces it.
    pub fn register(
        &self,
        account: NewAccount,
        token: NewToken,
        mail: MailDraft,
        hold_secs: u64,
    ) -> Result<RegisterOutcome, StoreError> {
        let txn = self.db.begin_write()?;
        let user = {
            let username_key = index_key(&account.username);
            let email_key = index_key(&account.email);
            let hold = |index, key: &str| -> Result<Holder, StoreError> {
                let id = txn.open_table(index)?.get(key)?.map(|v| v.value());
                let Some(id) = id else {
                    return Ok(Holder::Nobody);
                };
                let user = user_or_missing(read_user(&txn.open_table(USERS)?, id)?, id)?;
                let until = user.created_at.saturating_add(hold_secs);
                Ok(if user.is_verified() {
                    Holder::Verified
                } else if account.now < until {
                    Holder::Waiting { until }
                } else {
                    Holder::Lapsed(Box::new(user))
                })
            };
            let by_name = hold(USERNAMES, &username_key)?;
            let by_email = hold(EMAILS, &email_key)?;
            match by_name {
                Holder::Verified => return Ok(RegisterOutcome::UsernameTaken),
                Holder::Waiting { until } => return Ok(RegisterOutcome::UsernamePending { until }),
                Holder::Nobody | Holder::Lapsed(_) => {}
            }
            match by_email {
                Holder::Verified => return Ok(RegisterOutcome::EmailTaken),
                Holder::Waiting { until } => return Ok(RegisterOutcome::EmailPending { until }),
                Holder::Nobody | Holder::Lapsed(_) => {}
            }
            for holder in [by_name, by_email] {
                if let Holder::Lapsed(lapsed) = holder {
                    if remove_unverified(&txn, &lapsed)? {
                        tracing::info!(
                            user = %lapsed.id,
                            "an unverified account past its hold gave way to a new registration"
                        );
                    }
                }
            }
            let mut usernames = txn.open_table(USERNAMES)?;
            let mut emails = txn.open_table(EMAILS)?;
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
                last_login_at: None,
                last_login_ip: None,
            };
            usernames.insert(username_key.as_str(), id.0)?;
            emails.insert(email_key.as_str(), id.0)?;
            write_user(&mut txn.open_table(USERS)?, &user)?;
            txn.open_table(USER_LANGS)?
                .insert(id.0, account.lang.as_str())?;
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

    /// An admin marks the registered account `id` verified without its link (the pending link
    /// is used up), with the admin's audit entry, in one transaction.
    pub fn mark_verified(
        &self,
        id: UserId,
        now: u64,
        audit: &AuditEntry,
    ) -> Result<MarkVerifiedOutcome, StoreError> {
        let txn = self.db.begin_write()?;
        let outcome = {
            let mut users = txn.open_table(USERS)?;
            match read_user(&users, id.0)? {
                Some(user) if user.kind == UserKind::Guest => MarkVerifiedOutcome::Unknown,
                None => MarkVerifiedOutcome::Unknown,
                Some(user) if user.is_verified() => MarkVerifiedOutcome::AlreadyVerified,
                Some(mut user) => {
                    if let Some(link) = &user.pending_verification {
                        let mut tokens = txn.open_table(VERIFY_TOKENS)?;
                        let pending = tokens
                            .get(link.0.as_str())?
                            .map(|v| decode::<VerificationToken>(v.value(), "verification token"))
                            .transpose()?;
                        if let Some(mut pending) = pending {
                            pending.state = TokenState::Used;
                            tokens.insert(link.0.as_str(), encode(&pending).as_slice())?;
                        }
                    }
                    make_verified(&txn, &mut user, now)?;
                    write_user(&mut users, &user)?;
                    write_audit(&txn, audit)?;
                    MarkVerifiedOutcome::Verified(Box::new(user))
                }
            }
        };
        txn.commit()?;
        Ok(outcome)
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
            let username = user.username.clone().unwrap_or_default();
            match token.state {
                TokenState::Used => return Ok(VerifyOutcome::AlreadyVerified),
                _ if user.is_verified() => return Ok(VerifyOutcome::AlreadyVerified),
                TokenState::Superseded => return Ok(VerifyOutcome::Superseded { username, email }),
                TokenState::Pending if now >= token.expires_at => {
                    return Ok(VerifyOutcome::Expired { username, email })
                }
                TokenState::Pending => {}
            }
            token.state = TokenState::Used;
            tokens.insert(hash.0.as_str(), encode(&token).as_slice())?;
            make_verified(&txn, &mut user, now)?;
            write_user(&mut users, &user)?;
            VerifyOutcome::Verified(user)
        };
        txn.commit()?;
        Ok(outcome)
    }

    /// Replaces the link of the unverified account that has both `username` and `email` (any
    /// letter case) with a new one and queues the mail that `mail` writes for that account in its
    /// language; the old link is marked superseded in the same transaction. Naming the account as
    /// well as the address means nobody can ask for a link to an account they do not know is
    /// theirs. `lang`, the asker's language, becomes the account's first; without it (an admin
    /// asking) the account keeps its own.
    #[allow(clippy::too_many_arguments)]
    pub fn resend_verification(
        &self,
        username: &str,
        email: &str,
        token: NewToken,
        lang: Option<&str>,
        mail: impl FnOnce(&User, Option<&str>) -> MailDraft,
        now: u64,
        audit: Option<&AuditEntry>,
    ) -> Result<ResendOutcome, StoreError> {
        let txn = self.db.begin_write()?;
        {
            let Some(id) = txn
                .open_table(EMAILS)?
                .get(index_key(email).as_str())?
                .map(|v| v.value())
            else {
                return Ok(ResendOutcome::UnknownAccount);
            };
            let mut users = txn.open_table(USERS)?;
            let mut user = user_or_missing(read_user(&users, id)?, id)?;
            let named = user
                .username
                .as_deref()
                .is_some_and(|u| index_key(u) == index_key(username));
            if !named {
                return Ok(ResendOutcome::UnknownAccount);
            }
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
            let mut langs = txn.open_table(USER_LANGS)?;
            if let Some(lang) = lang {
                langs.insert(user.id.0, lang)?;
            }
            let lang = langs.get(user.id.0)?.map(|v| v.value().to_owned());
            enqueue_mail_in(&txn, mail(&user, lang.as_deref()), now)?;
            if let Some(audit) = audit {
                write_audit(&txn, audit)?;
            }
        }
        txn.commit()?;
        Ok(ResendOutcome::Queued)
    }

    /// The language tag `user`'s mail is written in, if one was ever given.
    pub fn user_lang(&self, user: UserId) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let langs = txn.open_table(USER_LANGS)?;
        Ok(langs.get(user.0)?.map(|v| v.value().to_owned()))
    }

    /// Writes `user`'s mail in `lang` from now on; only a registered account that still exists
    /// gets the row (guests get no mail), so a deleted account's language cannot come back.
    pub fn set_user_lang(&self, user: UserId, lang: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        let registered = read_user(&txn.open_table(USERS)?, user.0)?
            .is_some_and(|u| u.kind == UserKind::Registered);
        if registered {
            txn.open_table(USER_LANGS)?.insert(user.0, lang)?;
        }
        txn.commit()?;
        Ok(())
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
        ip: String,
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
                ip: Some(ip),
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
        ip: String,
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
            last_login_at: None,
            last_login_ip: None,
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
                ip: Some(ip),
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
        self.refresh_host_names(updated.id);
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

    /// Deletes what has outlived its use, in one transaction: guests last seen before the
    /// cut-off with all their sessions, expired sessions (after a week), verification links
    /// expired before the cut-off with the unverified accounts whose newest link they are, and
    /// old login events.
    pub fn purge(&self, rules: PurgeRules) -> Result<Purged, StoreError> {
        let txn = self.db.begin_write()?;
        let mut purged = Purged::default();
        {
            let mut unverified = Vec::new();
            {
                let users = txn.open_table(USERS)?;
                let tokens = txn.open_table(VERIFY_TOKENS)?;
                for entry in users.iter()? {
                    let (_, value) = entry?;
                    let user: User = decode(value.value(), "user")?;
                    if user.kind == UserKind::Guest
                        && user.last_seen < rules.guests_seen_before
                        && !rules.spare_guests.contains(&user.id)
                    {
                        purged.guests.push(user);
                    } else if user.kind == UserKind::Registered && !user.is_verified() {
                        let link = match &user.pending_verification {
                            Some(hash) => tokens
                                .get(hash.0.as_str())?
                                .map(|v| decode::<VerificationToken>(v.value(), "token"))
                                .transpose()?,
                            None => None,
                        };
                        let expired_at = link.map_or(user.created_at, |l| l.expires_at);
                        if expired_at < rules.links_expired_before {
                            unverified.push(user);
                        }
                    }
                }
            }
            {
                let mut users = txn.open_table(USERS)?;
                for guest in &purged.guests {
                    users.remove(guest.id.0)?;
                }
            }
            for user in &unverified {
                remove_unverified(&txn, user)?;
            }
            purged.unverified = unverified.len();
            purged.links = removed_count(&mut txn.open_table(VERIFY_TOKENS)?, |table| {
                table.retain(|_, value| {
                    decode::<VerificationToken>(value, "verification token")
                        .is_ok_and(|t| t.expires_at >= rules.links_expired_before)
                })
            })?;

            let gone: std::collections::HashSet<UserId> =
                purged.guests.iter().map(|g| g.id).collect();
            // Expired sessions are kept a week, so their tokens still answer "session expired"
            // rather than "not logged in".
            let forget_before = rules.now.saturating_sub(EXPIRED_SESSION_MEMORY);
            txn.open_table(SESSIONS)?.retain(|_, value| {
                match decode::<Session>(value, "session") {
                    Ok(s) => s.expires_at > forget_before && !gone.contains(&s.user_id),
                    Err(_) => false,
                }
            })?;

            purged.login_events = removed_count(&mut txn.open_table(LOGINS)?, |table| {
                table.retain_in(..(rules.logins_before, 0), |_, _| false)
            })?;
            // Only today's rows stop a second count; older days keep their counted figure.
            txn.open_table(LOGIN_DAY_USERS)?
                .retain_in(..(rules.logins_before / super::stats::DAY, 0), |_, _| false)?;
        }
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
