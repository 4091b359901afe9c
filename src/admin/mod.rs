//! Administration: admin accounts (apart from users), their logins and sessions, the first-run
//! setup link, and the audit entries that admin actions write.
//!
//! Owns: the rules (names and passwords as users' are checked, login rate limits, session
//! lifetime, the setup token's hour) and the flows. Calls: store (admins, admin sessions, the
//! setup token, the audit log), accounts' secrets, hashing threads and validation rules, limits.
//! Never sees HTTP: callers pass plain values and get [`AdminError`] back.
//!
//! The command line's functions ([`create`], [`change_password`], [`delete`], [`list`]) run
//! without a server, on a store they opened themselves; everything else runs in the server.

pub mod disk;
pub mod ip_bans;
pub mod moderation;
pub mod users;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::accounts::hashers::Hashers;
use crate::accounts::{secrets, validate};
use crate::config::Config;
use crate::limits::{Key, LoginLimits, RetryAfter};
use crate::model::{Admin, AdminSession, AuditAction, AuditEntry, TokenHash};
use crate::store::{unix_now, FirstAdminOutcome, SetupState, Store, StoreError};

/// The name the command line acts under in the audit log.
pub const CLI_ACTOR: &str = "cli";
/// The longest reason an admin may give for an action, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// How often the login limiters forget the keys whose time is over.
const LIMITER_SWEEP_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    InvalidPassword(String),
    #[error("An admin with that name exists already.")]
    NameTaken,
    #[error("There is no admin with that name.")]
    NoSuchAdmin,
    #[error("Wrong admin name or password.")]
    InvalidCredentials,
    #[error("Log in as an admin first (an admin session, not a user's).")]
    AdminRequired,
    #[error(
        "This setup link is not valid: it is wrong, or its hour is over. Restart the server \
         for a new one (it is printed in the log), or create an admin with \
         `roommanager admin create NAME`."
    )]
    SetupInvalid,
    #[error("An admin exists already, so the setup link is used up; log in at /admin/login.")]
    SetupDone,
    #[error("There is no such user.")]
    NoSuchUser,
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    InvalidBanEnd(String),
    #[error("A reason has at most {MAX_REASON_CHARS} characters; this one has {0}.")]
    ReasonTooLong(usize),
    #[error("give a reason")]
    ReasonRequired,
    #[error("Too many attempts; try again in {} seconds.", .0.as_secs())]
    RateLimited(Duration),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// When a ban given with an admin form's length ends (unix seconds; `None`: until lifted):
/// `1h`, `1d`, `7d` from `now`, `permanent`, or `date`: the end (UTC) of the `YYYY-MM-DD` day
/// in `date`, which must still be to come. A date with another choice is refused, not guessed at.
pub fn ban_end(choice: &str, date: &str, now: u64) -> Result<Option<u64>> {
    const HOUR: u64 = 3600;
    let invalid = |message: String| Err(AdminError::InvalidBanEnd(message));
    let date = date.trim();
    if !date.is_empty() && choice != "date" {
        return invalid(
            "a date was given with another length: choose \"until the end of the date\" or \
             clear the date"
                .to_owned(),
        );
    }
    let hours = match choice {
        "1h" => 1,
        "1d" => 24,
        "7d" => 7 * 24,
        "permanent" => return Ok(None),
        "date" => {
            let Some(day) = crate::calendar::parse_date(date) else {
                return invalid(format!(
                    "give the last day of the ban as YYYY-MM-DD, as 2030-01-31; {date:?} is not one"
                ));
            };
            let end = (day + 1) * 24 * HOUR;
            if end <= now {
                return invalid(format!(
                    "{date} is over already: a ban's end must be in the future"
                ));
            }
            return Ok(Some(end));
        }
        other => {
            return invalid(format!(
                "a ban lasts 1h, 1d, 7d, permanent or until a date; {other:?} is not one of them"
            ))
        }
    };
    Ok(Some(now + hours * HOUR))
}

impl From<RetryAfter> for AdminError {
    fn from(retry: RetryAfter) -> Self {
        AdminError::RateLimited(retry.0)
    }
}

pub type Result<T> = std::result::Result<T, AdminError>;

/// A request's admin and the session it came with.
#[derive(Debug, Clone)]
pub struct SignedAdmin {
    pub admin: Admin,
    pub session: TokenHash,
}

impl SignedAdmin {
    /// The audit entry of an action of this admin, now, from `ip`; `target` is `kind:id`.
    pub fn audit(
        &self,
        action: AuditAction,
        target: String,
        reason: &str,
        ip: IpAddr,
    ) -> AuditEntry {
        AuditEntry {
            at: unix_now(),
            admin: self.admin.name.clone(),
            action,
            target,
            reason: reason.to_owned(),
            ip: ip.to_string(),
        }
    }
}

/// A new admin session: the token (shown once) and when it ends.
#[derive(Debug, Clone)]
pub struct AdminLogin {
    pub token: String,
    pub expires_at: u64,
}

pub struct Admins {
    store: Store,
    hashers: Arc<Hashers>,
    login_limits: LoginLimits,
    session_ttl: u64,
    setup_ttl: u64,
}

impl Admins {
    /// Password work runs on `hashers` (shared with accounts).
    pub fn new(config: &Config, store: Store, hashers: Arc<Hashers>) -> Self {
        Admins {
            store,
            hashers,
            login_limits: LoginLimits::new(&config.limits),
            session_ttl: config.admin.session_ttl_secs,
            setup_ttl: config.admin.setup_link_secs,
        }
    }

    /// While no admin exists: a new first-run setup token (every earlier one stops working),
    /// valid for `admin.setup_link_secs`. `None` once an admin exists.
    pub async fn issue_setup_token(&self) -> Result<Option<String>> {
        let (token, hash) = secrets::new_token();
        let until = unix_now() + self.setup_ttl;
        let open = self
            .store
            .run(move |s| s.replace_setup_token(&hash, until))
            .await?;
        Ok(open.then_some(token))
    }

    /// Whether `token` may create the first admin now.
    pub async fn check_setup(&self, token: &str) -> Result<()> {
        // A malformed token is looked up as a hash no token has, so an existing admin still
        // says "setup is over" rather than "wrong link".
        let hash = secrets::parse_token(token).unwrap_or(TokenHash(String::new()));
        let now = unix_now();
        let state = self.store.run(move |s| s.setup_state(&hash, now)).await?;
        match state {
            SetupState::Open => Ok(()),
            SetupState::Invalid => Err(AdminError::SetupInvalid),
            SetupState::AdminExists => Err(AdminError::SetupDone),
        }
    }

    /// Creates the first admin with a setup token, once, and logs it in.
    pub async fn create_first(
        &self,
        token: &str,
        name: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<AdminLogin> {
        // Refused before any hashing: a wrong token costs nothing.
        self.check_setup(token).await?;
        let hash = secrets::parse_token(token).ok_or(AdminError::SetupInvalid)?;
        let admin = self.new_admin(name, password).await?;
        let audit = AuditEntry {
            at: admin.created_at,
            admin: admin.name.clone(),
            action: AuditAction::CreateAdmin,
            target: format!("admin:{}", admin.name),
            reason: "first-run setup link".to_owned(),
            ip: client.to_string(),
        };
        let stored = admin.clone();
        let outcome = self
            .store
            .run(move |s| s.create_first_admin(&hash, &stored, &audit))
            .await?;
        match outcome {
            FirstAdminOutcome::Created => {
                tracing::info!(admin = %admin.name, "the first admin was created with the setup link");
                self.start_session(&admin, client).await
            }
            FirstAdminOutcome::Refused(SetupState::AdminExists) => Err(AdminError::SetupDone),
            FirstAdminOutcome::Refused(_) => Err(AdminError::SetupInvalid),
        }
    }

    /// Checks a name and password and starts an admin session. Failures count per (name,
    /// client) with back-off and every attempt per client, as users' logins do, apart from them.
    pub async fn login(&self, name: &str, password: &str, client: IpAddr) -> Result<AdminLogin> {
        let name = name.trim();
        validate::username(name).map_err(AdminError::InvalidName)?;
        let client_key = Key::client(client);
        self.login_limits.per_client.check(client_key)?;
        let attempt = Key::of(&[b"admin", name.to_lowercase().as_bytes()]).and(client_key);
        self.login_limits.failures.check(attempt)?;
        let lookup = name.to_owned();
        let admin = self.store.run(move |s| s.admin(&lookup)).await?;
        let password = password.to_owned();
        let (admin, password_ok) = self
            .hashing(move || match admin {
                Some(admin) => {
                    let ok = secrets::verify_password(&password, &admin.password_hash);
                    (Some(admin), ok)
                }
                None => {
                    secrets::verify_against_nobody(&password);
                    (None, false)
                }
            })
            .await?;
        match admin {
            Some(admin) if password_ok => {
                self.login_limits.failures.succeeded(attempt);
                self.start_session(&admin, client).await
            }
            _ => {
                self.login_limits.failures.failed(attempt);
                Err(AdminError::InvalidCredentials)
            }
        }
    }

    /// Resolves an admin session token; an expired session is ended.
    pub async fn authenticate(&self, token: &str) -> Result<SignedAdmin> {
        let hash = secrets::parse_token(token).ok_or(AdminError::AdminRequired)?;
        let lookup = hash.clone();
        let found = self.store.run(move |s| s.admin_session(&lookup)).await?;
        let (session, admin) = found.ok_or(AdminError::AdminRequired)?;
        if unix_now() >= session.expires_at {
            let expired = hash.clone();
            self.store
                .run(move |s| s.end_admin_session(&expired))
                .await?;
            return Err(AdminError::AdminRequired);
        }
        Ok(SignedAdmin {
            admin,
            session: hash,
        })
    }

    pub async fn logout(&self, session: TokenHash) -> Result<()> {
        self.store
            .run(move |s| s.end_admin_session(&session))
            .await?;
        Ok(())
    }

    /// The login limiters' sweep loop: forgets expired keys every minute until `shutdown`.
    pub async fn run_limiter_sweep(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(LIMITER_SWEEP_EVERY) => {}
            }
            self.login_limits.sweep();
        }
    }

    async fn start_session(&self, admin: &Admin, client: IpAddr) -> Result<AdminLogin> {
        let (token, hash) = secrets::new_token();
        let now = unix_now();
        let session = AdminSession {
            admin: admin.name.clone(),
            created_at: now,
            expires_at: now + self.session_ttl,
        };
        let expires_at = session.expires_at;
        let ip = client.to_string();
        self.store
            .run(move |s| s.start_admin_session(&hash, &session, &ip))
            .await?;
        tracing::info!(admin = %admin.name, %client, "admin logged in");
        Ok(AdminLogin { token, expires_at })
    }

    /// A validated admin with its password hashed (on the hashing threads).
    async fn new_admin(&self, name: &str, password: &str) -> Result<Admin> {
        check_new(name, password)?;
        let (name, password) = (name.to_owned(), password.to_owned());
        self.hashing(move || admin_with(name, &password)).await?
    }

    async fn hashing<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        self.hashers
            .run(work)
            .await
            .ok_or(AdminError::Store(StoreError::TaskFailed))
    }
}

/// The reason an admin gives for an action, trimmed; at most [`MAX_REASON_CHARS`].
pub fn reason(text: &str) -> Result<String> {
    let text = text.trim();
    // The byte length first, so a huge value is never counted character by character.
    if text.len() > MAX_REASON_CHARS * 4 || text.chars().count() > MAX_REASON_CHARS {
        return Err(AdminError::ReasonTooLong(text.chars().count()));
    }
    Ok(text.to_owned())
}

/// A reason the people an action touches are shown (a ban's, a room's close): as [`reason`],
/// and not empty.
pub fn required_reason(text: &str) -> Result<String> {
    let reason = reason(text)?;
    if reason.is_empty() {
        return Err(AdminError::ReasonRequired);
    }
    Ok(reason)
}

/// Names follow the username rule, passwords the users' password rule.
fn check_new(name: &str, password: &str) -> Result<()> {
    validate::username(name).map_err(AdminError::InvalidName)?;
    validate::password(password).map_err(AdminError::InvalidPassword)
}

/// A new admin record for `name`, its password hashed here (slow: not on an async thread).
fn admin_with(name: String, password: &str) -> Result<Admin> {
    let password_hash = secrets::hash_password(password).map_err(AdminError::Hashing)?;
    Ok(Admin {
        name,
        password_hash,
        created_at: unix_now(),
        last_login_at: None,
        last_login_ip: None,
    })
}

/// An audit entry of the command line.
fn cli_audit(action: AuditAction, name: &str) -> AuditEntry {
    AuditEntry {
        at: unix_now(),
        admin: CLI_ACTOR.to_owned(),
        action,
        target: format!("admin:{name}"),
        reason: String::new(),
        ip: String::new(),
    }
}

/// `roommanager admin create`: adds an admin (blocking; the server is not running).
pub fn create(store: &Store, name: &str, password: &str) -> Result<()> {
    check_new(name, password)?;
    let admin = admin_with(name.to_owned(), password)?;
    if store.create_admin(&admin, &cli_audit(AuditAction::CreateAdmin, name))? {
        Ok(())
    } else {
        Err(AdminError::NameTaken)
    }
}

/// `roommanager admin passwd`: sets a new password and ends the admin's sessions.
pub fn change_password(store: &Store, name: &str, password: &str) -> Result<()> {
    validate::password(password).map_err(AdminError::InvalidPassword)?;
    let hash = secrets::hash_password(password).map_err(AdminError::Hashing)?;
    let audit = cli_audit(AuditAction::ChangeAdminPassword, name);
    if store.set_admin_password(name, hash, &audit)? {
        Ok(())
    } else {
        Err(AdminError::NoSuchAdmin)
    }
}

/// `roommanager admin delete`: deletes an admin and its sessions.
pub fn delete(store: &Store, name: &str) -> Result<()> {
    if store.delete_admin(name, &cli_audit(AuditAction::DeleteAdmin, name))? {
        Ok(())
    } else {
        Err(AdminError::NoSuchAdmin)
    }
}

/// `roommanager admin list`.
pub fn list(store: &Store) -> Result<Vec<Admin>> {
    Ok(store.admins()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_form_ends_at_its_preset_or_at_the_end_of_its_date() {
        let now = 1_000_000_000;
        assert_eq!(ban_end("1h", "", now).ok(), Some(Some(now + 3600)));
        assert_eq!(ban_end("1d", "", now).ok(), Some(Some(now + 86_400)));
        assert_eq!(ban_end("7d", "", now).ok(), Some(Some(now + 7 * 86_400)));
        assert_eq!(ban_end("permanent", "", now).ok(), Some(None));
        // 2030-01-31 ends at 2030-02-01 00:00:00 UTC; 2001-09-09 is the day of `now`.
        assert_eq!(
            ban_end("date", "2030-01-31", now).ok(),
            Some(Some(1_896_134_400))
        );
        assert_eq!(
            ban_end("date", "2001-09-09", now).ok(),
            Some(Some(1_000_080_000))
        );
        for (choice, date) in [
            ("date", ""),
            ("date", "31/01/2030"),
            ("date", "2001-09-08"),
            ("1d", "2030-01-31"),
            ("1y", ""),
            ("", ""),
        ] {
            assert!(
                matches!(
                    ban_end(choice, date, now),
                    Err(AdminError::InvalidBanEnd(_))
                ),
                "{choice} {date}"
            );
        }
    }
}
