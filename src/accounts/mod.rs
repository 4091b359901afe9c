//! Accounts: registration with email verification, login and sessions, guests, profiles and
//! the owner's room record.
//!
//! Owns: the rules (validation, rate limits, who may do what) and the flows. Calls: store (one
//! transaction per flow), mail (wakes the delivery loop after queueing), files (images), limits,
//! and [`SessionEnds`] (what the app wired in to hear that sessions ended).
//! Never sees HTTP: callers pass plain values (a client IP, a token string) and get
//! [`AccountsError`] back.

mod secrets;
pub mod validate;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::files::{Files, FilesError, ImageKind};
use crate::limits::{RateLimiter, RetryAfter};
use crate::mail::Mailer;
use crate::model::{LoginKind, Room, Session, TokenHash, User, UserId, UserKind};
use crate::store::{
    unix_now, MailDraft, NewAccount, NewToken, RegisterOutcome, ResendOutcome, Store, StoreError,
    VerifyOutcome,
};

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
    #[error("That username is taken.")]
    UsernameTaken,
    #[error("An account with that email exists already.")]
    EmailTaken,
    #[error("No account has that email.")]
    UnknownEmail,
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
    Expired { email: String },
    Superseded { email: String },
    Unknown,
}

struct Limits {
    login_account: RateLimiter,
    login_ip: RateLimiter,
    register_ip: RateLimiter,
    email_address: RateLimiter,
}

pub struct Accounts {
    store: Store,
    mailer: Arc<Mailer>,
    files: Arc<Files>,
    ends: Arc<dyn SessionEnds>,
    limits: Limits,
    verification_ttl: u64,
    session_ttl: u64,
    guest_idle: u64,
}

impl Accounts {
    pub fn new(
        config: &Config,
        store: Store,
        mailer: Arc<Mailer>,
        files: Arc<Files>,
        ends: Arc<dyn SessionEnds>,
    ) -> Self {
        let l = &config.limits;
        let limiter = |n, secs| RateLimiter::new(n, Duration::from_secs(secs));
        Accounts {
            store,
            mailer,
            files,
            ends,
            limits: Limits {
                login_account: limiter(l.login_per_account, l.login_window_secs),
                login_ip: limiter(l.login_per_ip, l.login_window_secs),
                register_ip: limiter(l.register_per_ip, l.register_window_secs),
                email_address: limiter(l.email_per_address, l.email_window_secs),
            },
            verification_ttl: config.accounts.verification_ttl_secs,
            session_ttl: config.accounts.session_ttl_secs,
            guest_idle: config.accounts.guest_idle_secs,
        }
    }

    /// Creates an unverified account and queues its verification mail, whose link starts with
    /// `link_base` (`scheme://host[:port]`, see `site::Site::link_base`).
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        email: &str,
        client: IpAddr,
        link_base: &str,
    ) -> Result<User> {
        validate::username(username).map_err(AccountsError::InvalidUsername)?;
        validate::email(email).map_err(AccountsError::InvalidEmail)?;
        validate::password(password).map_err(AccountsError::InvalidPassword)?;
        self.limits.register_ip.check(&client.to_string())?;
        self.limits.email_address.check(&email.to_lowercase())?;
        let password_hash = hash_password(password).await?;
        let now = unix_now();
        let (token, link) = self.verification_link();
        let account = NewAccount {
            username: username.to_owned(),
            email: email.to_owned(),
            password_hash,
            now,
        };
        let mail = self.verification_mail(email, username, &token, link_base);
        let outcome = self
            .store
            .run(move |s| s.register(account, link, mail))
            .await?;
        match outcome {
            RegisterOutcome::Created(user) => {
                self.mailer.wake();
                tracing::info!(user = %user.id, "registered; verification mail queued");
                Ok(*user)
            }
            RegisterOutcome::UsernameTaken => Err(AccountsError::UsernameTaken),
            RegisterOutcome::EmailTaken => Err(AccountsError::EmailTaken),
        }
    }

    /// Sends a fresh verification link; earlier links of the account stop working.
    pub async fn resend_verification(&self, email: &str, link_base: &str) -> Result<()> {
        validate::email(email).map_err(AccountsError::InvalidEmail)?;
        self.limits.email_address.check(&email.to_lowercase())?;
        let (token, link) = self.verification_link();
        let mail = self.verification_mail(email, "", &token, link_base);
        let email = email.to_owned();
        let outcome = self
            .store
            .run(move |s| s.resend_verification(&email, link, mail, unix_now()))
            .await?;
        match outcome {
            ResendOutcome::Queued => {
                self.mailer.wake();
                Ok(())
            }
            ResendOutcome::UnknownEmail => Err(AccountsError::UnknownEmail),
            ResendOutcome::AlreadyVerified => Err(AccountsError::AlreadyVerified),
        }
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
            VerifyOutcome::Expired { email } => Verification::Expired { email },
            VerifyOutcome::Superseded { email } => Verification::Superseded { email },
            VerifyOutcome::Unknown => Verification::Unknown,
        })
    }

    /// Checks a username-or-email and password and starts a session.
    pub async fn login(&self, login: &str, password: &str, client: IpAddr) -> Result<NewSession> {
        self.limits.login_ip.check(&client.to_string())?;
        self.limits
            .login_account
            .check(&login.trim().to_lowercase())?;
        let lookup = login.trim().to_owned();
        let user = self.store.run(move |s| s.find_by_login(&lookup)).await?;
        let password = password.to_owned();
        let (user, password_ok) = tokio::task::spawn_blocking(move || match user {
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
        .await
        .map_err(|_| AccountsError::Store(StoreError::TaskFailed))?;
        let user = match user {
            Some(user) if password_ok => user,
            _ => return Err(AccountsError::InvalidCredentials),
        };
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
            .run(move |s| s.start_session(&hash, &session, LoginKind::Password))
            .await?;
        Ok(NewSession {
            token,
            expires_at,
            user,
        })
    }

    /// Creates a guest user with a generated nickname and a session.
    pub async fn create_guest(&self) -> Result<NewSession> {
        let (token, hash) = secrets::new_token();
        let now = unix_now();
        let expires_at = now + self.session_ttl;
        let nickname = format!("Guest-{}", secrets::guest_tag());
        let user = self
            .store
            .run(move |s| s.create_guest(nickname, &hash, now, expires_at))
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

    /// Deletes expired sessions and idle guests (a guest with an open connection is not idle);
    /// a deleted guest's connections end at once. Run periodically by [`Accounts::run_purge`].
    pub async fn purge(&self) -> Result<usize> {
        let now = unix_now();
        let cutoff = now.saturating_sub(self.guest_idle);
        let active = self.ends.active_users();
        let purged = self
            .store
            .run(move |s| s.purge(now, cutoff, &active))
            .await?;
        for guest in &purged {
            // Only a guest that connected just as the purge ran has connections to end.
            self.ends.user_gone(guest.id, SessionEnd::AccountDeleted);
            if let Some(avatar) = &guest.avatar {
                self.files.remove(ImageKind::Avatar, avatar);
            }
        }
        Ok(purged.len())
    }

    /// The purge loop: runs until `shutdown` is cancelled.
    pub async fn run_purge(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let every = Duration::from_secs((self.guest_idle / 2).clamp(1, 600));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            match self.purge().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(guests = n, "purged idle guests"),
                Err(e) => tracing::error!(error = %e, "purging idle guests failed"),
            }
        }
    }

    fn verification_link(&self) -> (String, NewToken) {
        let (token, hash) = secrets::new_token();
        let link = NewToken {
            hash,
            expires_at: unix_now() + self.verification_ttl,
        };
        (token, link)
    }

    fn verification_mail(&self, to: &str, username: &str, token: &str, base: &str) -> MailDraft {
        let greeting = if username.is_empty() {
            "Hello,".to_owned()
        } else {
            format!("Hello {username},")
        };
        let hours = self.verification_ttl.div_ceil(3600);
        MailDraft {
            to: to.to_owned(),
            subject: "Verify your email for RoomManager".to_owned(),
            text: format!(
                "{greeting}\n\nplease confirm this email address by opening the link below:\n\n\
                 {base}/verify?token={token}\n\n\
                 The link works for {hours} hours. If you did not register, ignore this mail.\n"
            ),
        }
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

async fn hash_password(password: &str) -> Result<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || secrets::hash_password(&password))
        .await
        .map_err(|_| AccountsError::Store(StoreError::TaskFailed))?
        .map_err(AccountsError::Hashing)
}
