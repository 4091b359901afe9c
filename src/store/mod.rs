//! Store: everything RoomManager keeps on disk, in one redb database under the data dir.
//!
//! Owns: the database file, its tables (`tables.rs`), the schema version and its migrations
//! (`migrations.rs`). Calls: nothing else in the crate. No redb type appears in this module's
//! public API; callers get plain domain values and [`StoreError`].
//!
//! redb calls block, so async code reaches the store through [`Store::run`], which moves the work
//! onto tokio's blocking pool. Every multi-step change is one write transaction.

mod accounts;
mod admin;
mod codec;
mod downloads;
mod ip_bans;
mod mail;
mod migrations;
mod push;
mod records;
mod rooms;
mod stats;
mod tables;
mod users;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase};

pub use accounts::{
    index_key, MailDraft, MarkVerifiedOutcome, NewAccount, NewToken, PurgeRules, Purged,
    RegisterOutcome, ResendOutcome, VerifyOutcome,
};
pub use admin::{AuditFilter, AuditPage, FirstAdminOutcome, SetupState};
pub use ip_bans::AddIpBanOutcome;
pub use mail::{MAIL_ERROR_MAX_BYTES, MAIL_SENT_KEPT};
pub use migrations::CURRENT as SCHEMA_VERSION;
pub use records::{CataloguePage, CatalogueQuery, Listed, RecordOrder};
pub use rooms::ChatEntry;
pub use stats::{
    HourFigures, LiveDay, LoginDay, LoginFigures, RecordDay, RecordFigures, TopRecord,
};
use tables::*;
pub use users::{UserFilter, UserOrder, UserQuery, UsersPage};
pub use watch::{WatchDelta, WatchStats};

/// The database file's name inside the data dir.
pub const DB_FILE: &str = "roommanager.redb";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data dir {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the database {path} is in use by another running roommanager; stop that one first, \
         or start this one with another --data-dir"
    )]
    InUse { path: PathBuf },
    #[error(
        "the database {path} has schema version {found}, but this roommanager only knows \
         versions up to {supported}; it was written by a newer roommanager — run that version, \
         or restore a backup made for this one"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("the database {path} is damaged: {problem}")]
    Corrupt { path: PathBuf, problem: String },
    #[error("a stored {what} record is damaged: {problem}")]
    Damaged { what: &'static str, problem: String },
    #[error("database error: {0}")]
    Backend(String),
    #[error("a database task stopped unexpectedly")]
    TaskFailed,
}

/// redb's error types stay inside this module: each becomes a `Backend` message.
macro_rules! backend_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Backend(e.to_string())
            }
        }
    )*};
}
backend_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What `/healthz` reports about the store.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreHealth {
    pub schema_version: u64,
    pub created_at: u64,
    pub instance_id: String,
}

/// A cheap, cloneable handle to the open database.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: Arc<PathBuf>,
    /// The catalogue's index (`records.rs`). A std lock: store calls are blocking code, and it
    /// is held only while the index is read or updated, never across an `.await`.
    catalogue: Arc<RwLock<records::Catalogue>>,
    /// Counts the catalogue's refreshes (`records.rs`): a page made of listed records is current
    /// for as long as it stays the same. Atomic, so reading it never waits for a refresh.
    catalogue_changes: Arc<AtomicU64>,
}

impl Store {
    /// Opens (or creates) the database in `data_dir`, checks its schema version and brings an
    /// older schema up to date.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse { path: path.clone() },
            other => StoreError::Corrupt {
                path: path.clone(),
                problem: other.to_string(),
            },
        })?;
        let store = Store {
            db: Arc::new(db),
            path: Arc::new(path),
            catalogue: Arc::default(),
            catalogue_changes: Arc::default(),
        };
        store.prepare()?;
        let catalogue = records::Catalogue::load(&store)?;
        *store
            .catalogue
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = catalogue;
        Ok(store)
    }

    /// Refuses a newer schema before writing anything, then creates or upgrades in one
    /// write transaction.
    fn prepare(&self) -> Result<(), StoreError> {
        let found = self.stored_version()?;
        if let Some(found) = found {
            if found > SCHEMA_VERSION {
                return Err(StoreError::SchemaTooNew {
                    path: self.path.to_path_buf(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            if found == 0 {
                return Err(StoreError::Corrupt {
                    path: self.path.to_path_buf(),
                    problem: "schema version 0 was never written by roommanager".to_owned(),
                });
            }
        }
        let txn = self.db.begin_write()?;
        open_all_tables(&txn)?;
        {
            let mut meta = txn.open_table(META)?;
            match found {
                None => {
                    meta.insert(META_CREATED_AT, unix_now())?;
                    meta.insert(META_INSTANCE_ID, random_u64())?;
                }
                Some(version) => migrations::upgrade(&txn, version)?,
            }
            meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn stored_version(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = match txn.open_table(META) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(meta.get(META_SCHEMA_VERSION)?.map(|v| v.value()))
    }

    /// Reads the store-wide facts; fails if the database cannot be read or written.
    pub fn health(&self) -> Result<StoreHealth, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let get = |key: &str| -> Result<u64, StoreError> {
            meta.get(key)?
                .map(|v| v.value())
                .ok_or_else(|| StoreError::Corrupt {
                    path: self.path.to_path_buf(),
                    problem: format!("meta key `{key}` is missing"),
                })
        };
        // A read succeeds from cache even after a write failed on disk; redb then refuses every
        // write until the file is reopened. Asking for a write (and dropping it at once) sees
        // that. Another write in progress is no sign of trouble.
        match self.db.try_begin_write() {
            Ok(write) => write.abort()?,
            Err(redb::TransactionError::WouldBlock) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(StoreHealth {
            schema_version: get(META_SCHEMA_VERSION)?,
            created_at: get(META_CREATED_AT)?,
            instance_id: format!("{:016x}", get(META_INSTANCE_ID)?),
        })
    }

    /// Runs blocking store work on tokio's blocking pool, off the async worker threads.
    pub async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|_| StoreError::TaskFailed)?
    }

    /// Closes the database file cleanly. Only the last handle closes it; earlier callers just
    /// drop theirs (redb flushes every commit, so nothing is lost either way).
    pub fn close(self) -> Result<(), StoreError> {
        match Arc::try_unwrap(self.db) {
            Ok(db) => db.close().map_err(StoreError::from),
            Err(_) => Ok(()),
        }
    }
}

/// Creates every table that does not exist yet, so readers never meet a missing table.
fn open_all_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(META)?;
    txn.open_table(USERS)?;
    txn.open_table(USERNAMES)?;
    txn.open_table(EMAILS)?;
    txn.open_table(VERIFY_TOKENS)?;
    txn.open_table(SESSIONS)?;
    txn.open_table(ROOMS)?;
    txn.open_table(MAIL_QUEUE)?;
    txn.open_table(LOGINS)?;
    txn.open_table(LIVES)?;
    txn.open_table(DANMAKU)?;
    txn.open_table(DANMAKU_COUNTS)?;
    txn.open_table(GIFTS)?;
    txn.open_table(BANS)?;
    txn.open_table(RECORDS)?;
    txn.open_table(RECORD_COMMENTS)?;
    txn.open_table(RECORD_REMOVALS)?;
    txn.open_table(PUSH_KEYS)?;
    txn.open_table(PUSH_IDS)?;
    txn.open_table(RECORD_VIEWERS)?;
    txn.open_table(RECORD_DAYS)?;
    txn.open_table(ADMINS)?;
    txn.open_table(ADMIN_SESSIONS)?;
    txn.open_table(ADMIN_SETUP)?;
    txn.open_table(AUDIT)?;
    txn.open_table(DOWNLOADS)?;
    txn.open_table(LOGIN_HOURS)?;
    txn.open_table(LOGIN_DAYS)?;
    txn.open_table(LOGIN_DAY_USERS)?;
    txn.open_table(WATCH_DAYS)?;
    txn.open_table(VIEWER_PEAKS)?;
    txn.open_table(MAIL_SENT)?;
    txn.open_table(IP_BANS)?;
    txn.open_table(USER_LANGS)?;
    Ok(())
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_u64() -> u64 {
    getrandom::u64().expect("the operating system's random source is always available on Linux")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_store_has_the_current_version_and_keeps_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap().health().unwrap();
        assert_eq!(first.schema_version, SCHEMA_VERSION);
        let again = Store::open(dir.path()).unwrap().health().unwrap();
        assert_eq!(again.instance_id, first.instance_id);
        assert_eq!(again.created_at, first.created_at);
    }

    #[test]
    fn a_second_open_of_a_held_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _held = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path())
            .err()
            .expect("second open must fail");
        assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    }
}
