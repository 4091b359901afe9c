//! Accounts: registration with email verification, login and sessions, guests, profiles and
//! the owner's room record.
//!
//! Owns: the rules (validation, rate limits, who may do what) and the flows. Calls: store (one
//! transaction per flow), mail (wakes the delivery loop after queueing), files (images), limits,
//! and [`SessionEnds`] (what the app wired in to hear that sessions ended).
//! Never sees HTTP: callers pass plain values (a client IP, a token string) and get
//! [`AccountsError`] back.

pub(crate) mod hashers;
pub(crate) mod secrets;
pub mod validate;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::files::{Files, FilesError, ImageKind};
use crate::i18n::Lang;
use crate::limits::{Key, LoginLimits, RateLimiter, RetryAfter};
use crate::mail::Mailer;
use crate::model::{AuditEntry, LoginKind, Room, Session, TokenHash, User, UserId, UserKind};
use crate::store::{
    unix_now, MailDraft, MarkVerifiedOutcome, NewAccount, NewToken, PurgeRules, RegisterOutcome,
    ResendOutcome, Store, StoreError, VerifyOutcome,
};

/// How often the rate limiters forget the keys whose time is over.
const LIMITER_SWEEP_EVERY: Duration = Duration::from_secs(60);
/// The purge runs at least this often.
const PURGE_AT_LEAST_EVERY: u64 = 600;

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("{0}")]
    InvalidUsername(String),
    #[error("{0}")]
    InvalidPassword(String),
    #[error("{0}")]
    InvalidEmail(String),
    #[error("{0}")]
    InvalidNickname(String),
    #[error("{0}")]
    InvalidRoomName(String),
    #[error("{0}")]
    InvalidDescription(String),
    #[error("{0}")]
    InvalidLogin(String),
    #[error("That username is taken.")]
    UsernameTaken,
    #[error("An account with that email exists already.")]
    EmailTaken,
    #[error(
        "That username belongs to an account whose email is not verified yet. Unless it is \
         verified, the username becomes free in {}.",
        in_words(*.0, Lang::En)
    )]
    UsernamePending(Duration),
    #[error(
        "An account whose email is not verified yet holds this email for another {}. If you \
         registered it, open the link we mailed you or ask for a new one; if not, do not open \
         that link, and register again after that time.",
        in_words(*.0, Lang::En)
    )]
    EmailPending(Duration),
    #[error("No account with this username and email is waiting for verification.")]
    UnknownAccount,
    #[error("This account is verified already; just log in.")]
    AlreadyVerified,
    #[error("Wrong username, email or password.")]
    InvalidCredentials,
    #[error("This account's email is not verified yet: follow the link in the email, or ask for a new one.")]
    EmailNotVerified,
    #[error("You are not logged in.")]
    NotLoggedIn,
    #[error("Your session has expired; log in again.")]
    SessionExpired,
    #[error("Guests can only watch; register to do this.")]
    RegisteredOnly,
    #[error("Too many attempts; try again in {} seconds.", .0.as_secs())]
    RateLimited(Duration),
    #[error(transparent)]
    Image(FilesError),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<RetryAfter> for AccountsError {
    fn from(retry: RetryAfter) -> Self {
        AccountsError::RateLimited(retry.0)
    }
}

pub type Result<T> = std::result::Result<T, AccountsError>;

/// A signed-in request's user and the session it came with.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: User,
    pub session: TokenHash,
}

impl SignedIn {
    /// The user, if registered (guests are refused).
    pub fn registered(&self) -> Result<&User> {
        match self.user.kind {
            UserKind::Registered => Ok(&self.user),
            UserKind::Guest => Err(AccountsError::RegisteredOnly),
        }
    }
}

/// A new session: the token to hand to the client (shown once) and when it ends.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub expires_at: u64,
    pub user: User,
}

/// Why a session ended, as the connections opened with it are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    LoggedOut,
    Expired,
    /// The account is gone (the purge of idle guests).
    AccountDeleted,
}

impl SessionEnd {
    /// The close reason sent to the connections.
    pub fn reason(self) -> &'static str {
        match self {
            SessionEnd::LoggedOut => "logged_out",
            SessionEnd::Expired => "session_expired",
            SessionEnd::AccountDeleted => "account_deleted",
        }
    }
}

/// What must hear at once that sessions ended, so that what was opened with them (WebSocket
/// connections) ends too; the app wires in the connection registry.
pub trait SessionEnds: Send + Sync {
    fn session_ended(&self, session: &TokenHash, why: SessionEnd);
    fn user_gone(&self, user: UserId, why: SessionEnd);
    /// The users with something open right now: the guest purge spares them (a guest who has
    /// been watching for a day is not idle).
    fn active_users(&self) -> HashSet<UserId>;
}

/// What a click on a verification link found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    Verified { nickname: String },
    AlreadyVerified,
    Expired { username: String, email: String },
    Superseded { username: String, email: String },
    Unknown,
}

struct Limits {
    login: LoginLimits,
    register_ip: RateLimiter,
    resend_ip: RateLimiter,
    email_address: RateLimiter,
    guest_ip: RateLimiter,
}

impl Limits {
    fn new(l: &crate::config::LimitsConfig) -> Self {
        let keys = l.max_tracked_keys;
        let limiter = |n, secs| RateLimiter::new(n, Duration::from_secs(secs), keys);
        Limits {
            login: LoginLimits::new(l),
            register_ip: limiter(l.register_per_ip, l.register_window_secs),
            resend_ip: limiter(l.resend_per_ip, l.resend_window_secs),
            email_address: limiter(l.email_per_address, l.email_window_secs),
            guest_ip: limiter(l.guest_per_ip, l.guest_window_secs),
        }
    }

    fn limiters(&self) -> [&RateLimiter; 4] {
        [
            &self.register_ip,
            &self.resend_ip,
            &self.email_address,
            &self.guest_ip,
        ]
    }
}

/// The key under which mails to `email` are counted.
fn address_key(email: &str) -> Key {
    Key::of(&[email.to_lowercase().as_bytes()])
}

pub struct Accounts {
    store: Store,
    mailer: Arc<Mailer>,
    files: Arc<Files>,
    ends: Arc<dyn SessionEnds>,
    limits: Limits,
    hashers: Arc<hashers::Hashers>,
    verification_ttl: u64,
    unverified_grace: u64,
    session_ttl: u64,
    guest_idle: u64,
    login_events_secs: u64,
}

impl Accounts {
    /// Sets up the accounts service; password work runs on `hashers` (shared with the admins').
    pub fn new(
        config: &Config,
        store: Store,
        mailer: Arc<Mailer>,
        files: Arc<Files>,
        ends: Arc<dyn SessionEnds>,
        hashers: Arc<hashers::Hashers>,
    ) -> Self {
        let a = &config.accounts;
        Accounts {
            store,
            mailer,
            files,
            ends,
            limits: Limits::new(&config.limits),
            hashers,
            verification_ttl: a.verification_ttl_secs,
            unverified_grace: a.unverified_grace_secs,
            session_ttl: a.session_ttl_secs,
            guest_idle: a.guest_idle_secs,
            login_events_secs: a.login_events_days.saturating_mul(24 * 3600),
        }
    }

    /// Creates an unverified account and queues its verification mail, whose link starts with
    /// `link_base` (`scheme://host[:port]`, see `site::Site::link_base`). An unverified account
    /// that has held the username or email for its verification time gives way to this one.
    /// `lang`, the language the person registers in, is the one the account's mail is written in.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        email: &str,
        client: IpAddr,
        link_base: &str,
        lang: Lang,
    ) -> Result<User> {
        validate::username(username).map_err(AccountsError::InvalidUsername)?;
        validate::email(email).map_err(AccountsError::InvalidEmail)?;
        validate::password(password).map_err(AccountsError::InvalidPassword)?;
        self.limits.register_ip.check(Key::client(client))?;
        self.limits.email_address.check(address_key(email))?;
        let password = password.to_owned();
        let password_hash = self
            .hashing(move || secrets::hash_password(&password))
            .await?
            .map_err(AccountsError::Hashing)?;
        let now = unix_now();
        let (token, link) = self.verification_link();
        let account = NewAccount {
            username: username.to_owned(),
            email: email.to_owned(),
            password_hash,
            now,
            lang: lang.tag().to_owned(),
        };
        let mail = self
            .mail_writer(link_base)
            .write(email, username, &token, false, lang);
        let hold = self.verification_ttl;
        let outcome = self
            .store
            .run(move |s| s.register(account, link, mail, hold))
            .await?;
        let wait = |until: u64| Duration::from_secs(until.saturating_sub(now));
        match outcome {
            RegisterOutcome::Created(user) => {
                self.mailer.wake();
                tracing::info!(user = %user.id, "registered; verification mail queued");
                Ok(*user)
            }
            RegisterOutcome::UsernameTaken => Err(AccountsError::UsernameTaken),
            RegisterOutcome::EmailTaken => Err(AccountsError::EmailTaken),
            RegisterOutcome::UsernamePending { until } => {
                Err(AccountsError::UsernamePending(wait(until)))
            }
            RegisterOutcome::EmailPending { until } => {
                Err(AccountsError::EmailPending(wait(until)))
            }
        }
    }

    /// Sends a fresh verification link for the unverified account with this username and
    /// email; its earlier links stop working. Both are needed, so a person who asks for a link
    /// for their address never gets one for someone else's account registered with it. The mail
    /// is in `lang`, the asker's language, which the account's mail keeps from then on.
    pub async fn resend_verification(
        &self,
        username: &str,
        email: &str,
        client: IpAddr,
        link_base: &str,
        lang: Lang,
    ) -> Result<()> {
        self.resend(username, email, client, link_base, Some(lang), None)
            .await
    }

    /// An admin's resend for the unverified account `id`: as the user's own, with the same
    /// limits (counted on the admin's address), and the admin's `audit` entry written with it.
    /// The mail is in the account's language, not the admin's.
    pub async fn resend_as_admin(
        &self,
        id: UserId,
        client: IpAddr,
        link_base: &str,
        audit: AuditEntry,
    ) -> Result<()> {
        let user = self
            .store
            .run(move |s| s.user(id))
            .await?
            .ok_or(AccountsError::UnknownAccount)?;
        let (Some(username), Some(email)) = (user.username, user.email) else {
            return Err(AccountsError::UnknownAccount);
        };
        self.resend(&username, &email, client, link_base, None, Some(audit))
            .await
    }

    /// An admin marks the unverified account `id` verified (its room is made as a click
    /// would), with the admin's `audit` entry.
    pub async fn mark_verified(&self, id: UserId, audit: AuditEntry) -> Result<User> {
        let outcome = self
            .store
            .run(move |s| s.mark_verified(id, unix_now(), &audit))
            .await?;
        match outcome {
            MarkVerifiedOutcome::Verified(user) => {
                tracing::info!(user = %user.id, "email marked verified by an admin; room created");
                Ok(*user)
            }
            MarkVerifiedOutcome::Unknown => Err(AccountsError::UnknownAccount),
            MarkVerifiedOutcome::AlreadyVerified => Err(AccountsError::AlreadyVerified),
        }
    }

    /// An admin deletes the account `id` (see [`Store::delete_user`]) with the admin's
    /// `audit` entry; its open connections end at once and its images are removed.
    pub async fn delete_by_admin(&self, id: UserId, audit: AuditEntry) -> Result<User> {
        let (user, room) = self
            .store
            .run(move |s| s.delete_user(id, &audit))
            .await?
            .ok_or(AccountsError::UnknownAccount)?;
        self.ends.user_gone(id, SessionEnd::AccountDeleted);
        if let Some(avatar) = &user.avatar {
            self.files.remove(ImageKind::Avatar, avatar);
        }
        if let Some(cover) = room.as_ref().and_then(|r| r.cover.as_deref()) {
            self.files.remove(ImageKind::Cover, cover);
        }
        tracing::info!(user = %id, "account deleted by an admin");
        Ok(user)
    }

    async fn resend(
        &self,
        username: &str,
        email: &str,
        client: IpAddr,
        link_base: &str,
        lang: Option<Lang>,
        audit: Option<AuditEntry>,
    ) -> Result<()> {
        validate::username(username).map_err(AccountsError::InvalidUsername)?;
        validate::email(email).map_err(AccountsError::InvalidEmail)?;
        self.limits.resend_ip.check(Key::client(client))?;
        self.limits.email_address.check(address_key(email))?;
        let (token, link) = self.verification_link();
        let mail = {
            let this = self.mail_writer(link_base);
            move |user: &User, lang: Option<&str>| {
                let to = user.email.as_deref().unwrap_or_default();
                let name = user.username.as_deref().unwrap_or_default();
                let lang = lang.and_then(Lang::from_tag).unwrap_or_default();
                this.write(to, name, &token, true, lang)
            }
        };
        let (username, email) = (username.to_owned(), email.to_owned());
        let outcome = self
            .store
            .run(move |s| {
                s.resend_verification(
                    &username,
                    &email,
                    link,
                    lang.map(Lang::tag),
                    mail,
                    unix_now(),
                    audit.as_ref(),
                )
            })
            .await?;
        match outcome {
            ResendOutcome::Queued => {
                self.mailer.wake();
                Ok(())
            }
            ResendOutcome::UnknownAccount => Err(AccountsError::UnknownAccount),
            ResendOutcome::AlreadyVerified => Err(AccountsError::AlreadyVerified),
        }
    }

    /// The signed-in user's mail is written in `lang` from now on (a guest gets no mail, so
    /// nothing is kept for one).
    pub async fn set_language(&self, who: &SignedIn, lang: Lang) -> Result<()> {
        let id = who.user.id;
        Ok(self
            .store
            .run(move |s| s.set_user_lang(id, lang.tag()))
            .await?)
    }

    /// Decides a click on a verification link.
    pub async fn verify(&self, token: &str) -> Result<Verification> {
        let Some(hash) = secrets::parse_token(token) else {
            return Ok(Verification::Unknown);
        };
        let outcome = self.store.run(move |s| s.verify(&hash, unix_now())).await?;
        Ok(match outcome {
            VerifyOutcome::Verified(user) => {
                tracing::info!(user = %user.id, "email verified; room created");
                Verification::Verified {
                    nickname: user.nickname,
                }
            }
            VerifyOutcome::AlreadyVerified => Verification::AlreadyVerified,
            VerifyOutcome::Expired { username, email } => Verification::Expired { username, email },
            VerifyOutcome::Superseded { username, email } => {
                Verification::Superseded { username, email }
            }
            VerifyOutcome::Unknown => Verification::Unknown,
        })
    }

    /// Checks a username-or-email and password and starts a session.
    ///
    /// Failures count per account and client: after a few, that client waits longer after each
    /// further one, while the owner elsewhere logs in as usual. All attempts of a client count
    /// towards its overall limit too.
    pub async fn login(&self, login: &str, password: &str, client: IpAddr) -> Result<NewSession> {
        let login = login.trim();
        validate::login(login).map_err(AccountsError::InvalidLogin)?;
        let ip = client.to_string();
        let client = Key::client(client);
        self.limits.login.per_client.check(client)?;
        let lookup = login.to_owned();
        let user = self.store.run(move |s| s.find_by_login(&lookup)).await?;
        // A known account counts as one whether it is named by username or email.
        let account = match &user {
            Some(user) => Key::of(&[b"user", &user.id.0.to_le_bytes()]),
            None => Key::of(&[b"name", login.to_lowercase().as_bytes()]),
        };
        let attempt = account.and(client);
        self.limits.login.failures.check(attempt)?;
        let password = password.to_owned();
        let (user, password_ok) = self
            .hashing(move || match user {
                Some(user) => {
                    let ok = user
                        .password_hash
                        .as_deref()
                        .is_some_and(|hash| secrets::verify_password(&password, hash));
                    (Some(user), ok)
                }
                None => {
                    secrets::verify_against_nobody(&password);
                    (None, false)
                }
            })
            .await?;
        let user = match user {
            Some(user) if password_ok => user,
            _ => {
                self.limits.login.failures.failed(attempt);
                return Err(AccountsError::InvalidCredentials);
            }
        };
        self.limits.login.failures.succeeded(attempt);
        if !user.is_verified() {
            return Err(AccountsError::EmailNotVerified);
        }
        let (token, hash) = secrets::new_token();
        let now = unix_now();
        let session = Session {
            user_id: user.id,
            created_at: now,
            expires_at: now + self.session_ttl,
        };
        let expires_at = session.expires_at;
        self.store
            .run(move |s| s.start_session(&hash, &session, LoginKind::Password, ip))
            .await?;
        Ok(NewSession {
            token,
            expires_at,
            user,
        })
    }

    /// Creates a guest user with a generated nickname and a session.
    pub async fn create_guest(&self, client: IpAddr) -> Result<NewSession> {
        self.limits.guest_ip.check(Key::client(client))?;
        let (token, hash) = secrets::new_token();
        let now = unix_now();
        let expires_at = now + self.session_ttl;
        let nickname = format!("Guest-{}", secrets::guest_tag());
        let ip = client.to_string();
        let user = self
            .store
            .run(move |s| s.create_guest(nickname, &hash, now, expires_at, ip))
            .await?;
        Ok(NewSession {
            token,
            expires_at,
            user,
        })
    }

    /// Resolves a session token to its user. Also marks the user as seen (coarsely, so a busy
    /// client does not write on every request).
    pub async fn authenticate(&self, token: &str) -> Result<SignedIn> {
        let hash = secrets::parse_token(token).ok_or(AccountsError::NotLoggedIn)?;
        let lookup = hash.clone();
        let found = self.store.run(move |s| s.session(&lookup)).await?;
        let (session, user) = found.ok_or(AccountsError::NotLoggedIn)?;
        let now = unix_now();
        if now >= session.expires_at {
            let expired = hash.clone();
            self.store.run(move |s| s.end_session(&expired)).await?;
            self.ends.session_ended(&hash, SessionEnd::Expired);
            return Err(AccountsError::SessionExpired);
        }
        let touch_every = (self.guest_idle / 4).clamp(1, 300);
        let user = if now.saturating_sub(user.last_seen) >= touch_every {
            let id = user.id;
            self.store
                .run(move |s| s.update_user(id, |u| u.last_seen = now))
                .await?
                .ok_or(AccountsError::NotLoggedIn)?
        } else {
            user
        };
        Ok(SignedIn {
            user,
            session: hash,
        })
    }

    /// Ends the session, and at once every connection opened with it.
    pub async fn logout(&self, session: TokenHash) -> Result<()> {
        let ended = session.clone();
        self.store.run(move |s| s.end_session(&ended)).await?;
        self.ends.session_ended(&session, SessionEnd::LoggedOut);
        Ok(())
    }

    /// Whether a session that was valid a moment ago has ended since (for a connection that
    /// registered after the end was announced).
    pub async fn session_end(&self, session: &TokenHash) -> Result<Option<SessionEnd>> {
        let lookup = session.clone();
        let found = self.store.run(move |s| s.session(&lookup)).await?;
        Ok(match found {
            None => Some(SessionEnd::LoggedOut),
            Some((session, _)) if unix_now() >= session.expires_at => Some(SessionEnd::Expired),
            Some(_) => None,
        })
    }

    /// Logs out whatever session `token` names; an unknown or malformed token is fine.
    pub async fn logout_token(&self, token: &str) -> Result<()> {
        match secrets::parse_token(token) {
            Some(hash) => self.logout(hash).await,
            None => Ok(()),
        }
    }

    pub async fn set_nickname(&self, who: &SignedIn, nickname: &str) -> Result<User> {
        let id = who.registered()?.id;
        let nickname = validate::nickname(nickname).map_err(AccountsError::InvalidNickname)?;
        self.store
            .run(move |s| s.update_user(id, |u| u.nickname = nickname))
            .await?
            .ok_or(AccountsError::NotLoggedIn)
    }

    /// Stores a new avatar image and returns its file name; the previous one is deleted.
    pub async fn set_avatar(&self, who: &SignedIn, bytes: Vec<u8>) -> Result<String> {
        let id = who.registered()?.id;
        self.replace_image(ImageKind::Avatar, bytes, move |store, name| {
            let mut replaced = None;
            store
                .update_user(id, |u| replaced = u.avatar.replace(name.to_owned()))?
                .ok_or(AccountsError::NotLoggedIn)?;
            Ok((name.to_owned(), replaced))
        })
        .await
    }

    /// The signed-in host's room.
    pub async fn my_room(&self, who: &SignedIn) -> Result<Room> {
        let room_id = who
            .registered()?
            .room_id
            .ok_or(AccountsError::EmailNotVerified)?;
        self.store
            .run(move |s| s.room(room_id))
            .await?
            .ok_or(AccountsError::EmailNotVerified)
    }

    /// Changes the room's name and/or description; both are validated before anything changes.
    pub async fn update_my_room(
        &self,
        who: &SignedIn,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<Room> {
        let room = self.my_room(who).await?;
        let name = name
            .map(validate::room_name)
            .transpose()
            .map_err(AccountsError::InvalidRoomName)?;
        let description = description
            .map(validate::description)
            .transpose()
            .map_err(AccountsError::InvalidDescription)?;
        self.store
            .run(move |s| {
                s.update_room(room.id, |r| {
                    if let Some(name) = name {
                        r.name = name;
                    }
                    if let Some(description) = description {
                        r.description = description;
                    }
                })
            })
            .await?
            .ok_or(AccountsError::EmailNotVerified)
    }

    /// Stores a new room cover and returns the updated room; the previous image is deleted.
    pub async fn set_room_cover(&self, who: &SignedIn, bytes: Vec<u8>) -> Result<Room> {
        let room_id = self.my_room(who).await?.id;
        self.replace_image(ImageKind::Cover, bytes, move |store, name| {
            let mut replaced = None;
            let room = store
                .update_room(room_id, |r| replaced = r.cover.replace(name.to_owned()))?
                .ok_or(AccountsError::EmailNotVerified)?;
            Ok((room, replaced))
        })
        .await
    }

    /// Deletes idle guests (a guest with an open connection is not idle), expired sessions,
    /// unverified accounts whose link expired (after the grace period), forgotten links and old
    /// login events; a deleted guest's connections end at once. Run by [`Accounts::run_purge`].
    pub async fn purge(&self) -> Result<()> {
        let now = unix_now();
        let rules = PurgeRules {
            now,
            guests_seen_before: now.saturating_sub(self.guest_idle),
            spare_guests: self.ends.active_users(),
            links_expired_before: now.saturating_sub(self.unverified_grace),
            logins_before: now.saturating_sub(self.login_events_secs),
        };
        let purged = self.store.run(move |s| s.purge(rules)).await?;
        for guest in &purged.guests {
            // Only a guest that connected just as the purge ran has connections to end.
            self.ends.user_gone(guest.id, SessionEnd::AccountDeleted);
            if let Some(avatar) = &guest.avatar {
                self.files.remove(ImageKind::Avatar, avatar);
            }
        }
        let guests = purged.guests.len();
        if guests + purged.unverified + purged.links + purged.login_events > 0 {
            tracing::info!(
                guests,
                unverified = purged.unverified,
                links = purged.links,
                login_events = purged.login_events,
                "purged"
            );
        }
        Ok(())
    }

    /// The purge loop: once at start, then periodically, until `shutdown` is cancelled. It runs
    /// twice within the shortest time it acts on, so nothing outlives its rule by much.
    pub async fn run_purge(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let shortest = self
            .guest_idle
            .min(self.verification_ttl.saturating_add(self.unverified_grace));
        let every = Duration::from_secs((shortest / 2).clamp(1, PURGE_AT_LEAST_EVERY));
        loop {
            if let Err(e) = self.purge().await {
                tracing::error!(error = %e, "the purge failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// The rate limiters' sweep loop: forgets expired keys every minute until `shutdown`.
    pub async fn run_limiter_sweep(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(LIMITER_SWEEP_EVERY) => {}
            }
            self.limits.login.sweep();
            for limiter in self.limits.limiters() {
                limiter.sweep();
            }
        }
    }

    /// How many keys (clients, accounts, addresses) the rate limiters track now, all together:
    /// what they cost in memory.
    pub fn limiter_keys(&self) -> usize {
        let windows: usize = self
            .limits
            .limiters()
            .iter()
            .map(|l| l.tracked_keys())
            .sum();
        windows + self.limits.login.tracked_keys()
    }

    fn verification_link(&self) -> (String, NewToken) {
        let (token, hash) = secrets::new_token();
        let link = NewToken {
            hash,
            expires_at: unix_now() + self.verification_ttl,
        };
        (token, link)
    }

    /// Mails whose links start with `link_base` (see `site::Site::link_base`).
    fn mail_writer(&self, link_base: &str) -> MailWriter {
        MailWriter {
            link_base: link_base.to_owned(),
            verification_ttl: self.verification_ttl,
        }
    }

    /// Runs password hashing (or checking) on the hashing threads.
    async fn hashing<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        self.hashers
            .run(work)
            .await
            .ok_or(AccountsError::Store(StoreError::TaskFailed))
    }

    /// Decodes and stores an uploaded image, then `point`s a record at its name in one
    /// transaction that also yields the name it replaced, which is deleted. Every step runs in one
    /// blocking job, so neither parallel uploads (each transaction sees the one before it) nor a
    /// client hanging up half-way leave a file that no record names.
    async fn replace_image<T: Send + 'static>(
        &self,
        kind: ImageKind,
        bytes: Vec<u8>,
        point: impl FnOnce(&Store, &str) -> Result<(T, Option<String>)> + Send + 'static,
    ) -> Result<T> {
        let slot = self
            .files
            .decode_slot()
            .await
            .map_err(AccountsError::Image)?;
        let files = self.files.clone();
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let saved = files.save_image(&slot, kind, &bytes);
            drop(slot);
            let name = saved.map_err(AccountsError::Image)?;
            match point(&store, &name) {
                Ok((value, replaced)) => {
                    if let Some(old) = replaced {
                        files.remove(kind, &old);
                    }
                    Ok(value)
                }
                Err(e) => {
                    files.remove(kind, &name);
                    Err(e)
                }
            }
        })
        .await
        .map_err(|_| AccountsError::Store(StoreError::TaskFailed))?
    }
}

/// Writes verification mails; owned, so a store transaction can write one for the account it
/// finds.
struct MailWriter {
    link_base: String,
    verification_ttl: u64,
}

impl MailWriter {
    /// The mail names the account it verifies: a link opened for an account someone else
    /// registered with your address gives that account your address.
    fn write(&self, to: &str, username: &str, token: &str, resent: bool, lang: Lang) -> MailDraft {
        let who: [(&str, &dyn std::fmt::Display); 2] = [("username", &username), ("to", &to)];
        let why = if resent {
            lang.fill("mail.verify.why_resent", &who)
        } else {
            lang.fill("mail.verify.why_registered", &who)
        };
        let link = format!("{}/verify?token={token}", self.link_base);
        let lifetime = in_words(Duration::from_secs(self.verification_ttl), lang);
        MailDraft {
            to: to.to_owned(),
            subject: lang.fill("mail.verify.subject", &who),
            text: lang.fill(
                "mail.verify.text",
                &[
                    ("why", &why),
                    ("username", &username),
                    ("link", &link),
                    ("lifetime", &lifetime),
                ],
            ),
        }
    }
}

/// A duration as a person reads it: "40 seconds", "12 minutes", "3 hours", "2 days" (rounded
/// up, so a wait is never longer than said).
fn in_words(wait: Duration, lang: Lang) -> String {
    let secs = wait.as_secs().max(1);
    match secs {
        0..120 => lang.count("duration.second", secs, &[]),
        120..7200 => lang.count("duration.minute", secs.div_ceil(60), &[]),
        7200..172_800 => lang.count("duration.hour", secs.div_ceil(3600), &[]),
        _ => lang.count("duration.day", secs.div_ceil(86_400), &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_said_in_words_rounded_up() {
        let said = |secs| in_words(Duration::from_secs(secs), Lang::En);
        assert_eq!(said(0), "1 second");
        assert_eq!(said(59), "59 seconds");
        assert_eq!(said(121), "3 minutes");
        assert_eq!(said(3600), "60 minutes");
        assert_eq!(said(7200), "2 hours");
        assert_eq!(said(86_400), "24 hours");
        assert_eq!(said(172_800), "2 days");
        assert_eq!(
            in_words(Duration::from_secs(3 * 86_400), Lang::ZhCn),
            "3 天"
        );
    }
}
