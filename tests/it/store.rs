//! The store's guarantees at start: schema version checks and exclusive ownership.

use redb::{Database, ReadableDatabase, TableDefinition};
use roommanager::store::{Store, DB_FILE, SCHEMA_VERSION};

use crate::common::{run_command, Process};

/// The stable name and layout of the schema-version table, as a newer roommanager would write it.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

fn stored_version(dir: &std::path::Path) -> u64 {
    let db = Database::create(dir.join(DB_FILE)).unwrap();
    let txn = db.begin_read().unwrap();
    let version = txn
        .open_table(META)
        .unwrap()
        .get("schema_version")
        .unwrap()
        .unwrap()
        .value();
    version
}

#[test]
fn a_store_from_a_newer_roommanager_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap().close().unwrap();
    {
        let db = Database::create(dir.path().join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", SCHEMA_VERSION + 98)
            .unwrap();
        txn.commit().unwrap();
    }
    let data = dir.path().to_str().unwrap();
    let (status, _, err) = run_command(
        dir.path(),
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", data],
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("schema version {}", SCHEMA_VERSION + 98)),
        "{err}"
    );
    assert!(err.contains("newer roommanager"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(stored_version(dir.path()), SCHEMA_VERSION + 98);
}

#[tokio::test]
async fn a_store_held_by_a_running_roommanager_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let first = Process::serve(dir.path(), "");
    let data = dir.path().to_str().unwrap();
    let (status, _, err) = run_command(
        dir.path(),
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", data],
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("in use by another running roommanager"),
        "{err}"
    );
    let health = reqwest::get(format!("{}/healthz", first.base))
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "the first server keeps serving");
}

/// A store written by schema 1 kept recordings as full URLs with whatever host was configured
/// then; opening it moves this server's own recordings to paths and leaves other services' URLs.
#[test]
fn recordings_stored_with_a_host_are_migrated_to_paths() {
    const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records_v1");
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap().close().unwrap();
    let record = |id: u64, url: &str| {
        serde_json::json!({"id": id, "room": 1, "host": 1, "live": id, "title": "Friday",
                           "started_at": 1_790_000_000u64, "duration_secs": 60, "url": url})
        .to_string()
    };
    {
        let db = Database::create(dir.path().join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", 1)
            .unwrap();
        let mut records = txn.open_table(RECORDS).unwrap();
        let own = record(1, "http://localhost:8080/records/files/habc/session_1.mp4");
        let other = record(2, "http://distributor.lan/records/host-1-1.mp4");
        records.insert(1, own.as_bytes()).unwrap();
        records.insert(2, other.as_bytes()).unwrap();
        drop(records);
        txn.commit().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let urls: Vec<String> = store
        .records()
        .unwrap()
        .into_iter()
        .map(|r| r.url)
        .collect();
    assert_eq!(
        urls,
        [
            "/records/files/habc/session_1.mp4",
            "http://distributor.lan/records/host-1-1.mp4"
        ]
    );
    store.close().unwrap();
    assert_eq!(stored_version(dir.path()), SCHEMA_VERSION);
}

/// Records stored by schema 2 may lack their host stream's id; opening the store takes it from
/// their live session, so deleting them can remove their media. The catalogue lists them.
#[test]
fn records_stored_without_their_stream_get_it_from_their_session() {
    const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records_v1");
    const LIVES: TableDefinition<u64, &[u8]> = TableDefinition::new("lives_v1");
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap().close().unwrap();
    {
        let db = Database::create(dir.path().join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", 2)
            .unwrap();
        let session = serde_json::json!({"id": 5, "room": 1, "host": 1, "title": "Friday",
            "started_at": 1_790_000_000u64, "ended_at": 1_790_000_060u64, "stream": "hold5",
            "settled": true});
        let record = serde_json::json!({"id": 3, "room": 1, "host": 1, "live": 5,
            "title": "Friday", "started_at": 1_790_000_000u64, "duration_secs": 60,
            "url": "/records/files/hold5/session_1.mp4"});
        txn.open_table(LIVES)
            .unwrap()
            .insert(5, session.to_string().as_bytes())
            .unwrap();
        txn.open_table(RECORDS)
            .unwrap()
            .insert(3, record.to_string().as_bytes())
            .unwrap();
        txn.commit().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let records = store.records().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].stream, "hold5");
    let page = store
        .catalogue(&roommanager::store::CatalogueQuery {
            order: roommanager::store::RecordOrder::Newest,
            host: None,
            text: Some("fri".into()),
            offset: 0,
            limit: 10,
        })
        .unwrap();
    assert_eq!((page.total, page.records[0].record.id.0), (1, 3));
    store.close().unwrap();
    assert_eq!(stored_version(dir.path()), SCHEMA_VERSION);
}

/// A store from before the statistics' roll-ups (schema 3) gets them filled from the login
/// events and watch statistics it kept: the same figures as if they had been written all along.
#[test]
fn statistics_rollups_are_filled_from_the_events_of_an_older_store() {
    use roommanager::model::{LoginKind, Session, TokenHash, UserId};
    use roommanager::store::WatchDelta;
    const ROLLUPS: [&str; 4] = [
        "login_hours_v1",
        "login_days_v1",
        "login_day_users_v1",
        "watch_days_v1",
    ];
    let dir = tempfile::tempdir().unwrap();
    let day = 20_000;
    let (before_logins, before_records) = {
        let store = Store::open(dir.path()).unwrap();
        for (user, at, kind) in [
            (1, 3_600, LoginKind::Password),
            (1, 7_200, LoginKind::Password),
            (2, 7_300, LoginKind::Guest),
            (3, 86_400 + 60, LoginKind::Password),
        ] {
            let session = Session {
                user_id: UserId(user),
                created_at: day * 86_400 + at,
                expires_at: u64::MAX,
            };
            let hash = TokenHash(format!("h{user}{at}"));
            store
                .start_session(&hash, &session, kind, "127.0.0.1".to_owned())
                .unwrap();
        }
        let live = store
            .start_live_session(
                roommanager::model::RoomId(1),
                UserId(1),
                "t".into(),
                "s".into(),
                1,
            )
            .unwrap();
        let record = store
            .add_record(&live, 60, "/records/files/s/a.mp4".into(), None)
            .unwrap();
        let delta = WatchDelta {
            watched_ms: 42_000,
            counted_at: Some(day * 86_400 + 10),
            last_at: day * 86_400 + 50,
        };
        store
            .add_watching(&[((record.id, UserId(4)), delta)])
            .unwrap();
        let figures = (
            store.login_figures(day, day + 1).unwrap(),
            store.record_figures(day, day + 1, 5).unwrap(),
        );
        store.close().unwrap();
        figures
    };
    assert_eq!(before_logins.days[0].logins, 2);
    assert_eq!(before_logins.days[0].unique_users, 1);
    {
        let db = Database::create(dir.path().join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        let rollups: Vec<_> = txn
            .list_tables()
            .unwrap()
            .filter(|t| ROLLUPS.contains(&redb::TableHandle::name(t)))
            .collect();
        assert_eq!(rollups.len(), ROLLUPS.len());
        for table in rollups {
            assert!(txn.delete_table(table).unwrap());
        }
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", 3)
            .unwrap();
        txn.commit().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let logins = store.login_figures(day, day + 1).unwrap();
    assert_eq!(logins.days, before_logins.days);
    assert_eq!(logins.hours, before_logins.hours);
    let records = store.record_figures(day, day + 1, 5).unwrap();
    assert_eq!(records.days, before_records.days);
    assert_eq!(records.by_views[0].views, 1);
    store.close().unwrap();
    assert_eq!(stored_version(dir.path()), SCHEMA_VERSION);
}

/// A store from before users kept their last login (schema 4) gets it filled from the login
/// events it kept: the latest event's time, and its address where the event had one.
#[test]
fn users_last_logins_are_filled_from_the_events_of_an_older_store() {
    use roommanager::model::UserId;
    const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("users_v1");
    const LOGINS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("logins_v1");
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap().close().unwrap();
    {
        let db = Database::create(dir.path().join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", 4)
            .unwrap();
        let mut users = txn.open_table(USERS).unwrap();
        for id in [1u64, 2, 3] {
            let user = serde_json::json!({"id": id, "kind": "registered",
                "username": format!("u{id}"), "email": format!("u{id}@example.com"),
                "password_hash": null, "nickname": format!("u{id}"), "verified_at": 1,
                "created_at": 1, "last_seen": 1, "avatar": null, "room_id": null,
                "pending_verification": null});
            users.insert(id, user.to_string().as_bytes()).unwrap();
        }
        let mut logins = txn.open_table(LOGINS).unwrap();
        let events = [
            (
                100,
                1,
                serde_json::json!({"at": 100, "user_id": 1, "kind": "password"}),
            ),
            (
                200,
                2,
                serde_json::json!({"at": 200, "user_id": 1, "kind": "password", "ip": "10.0.0.7"}),
            ),
            (
                300,
                3,
                serde_json::json!({"at": 300, "user_id": 2, "kind": "password"}),
            ),
        ];
        for (at, seq, event) in events {
            logins
                .insert((at, seq), event.to_string().as_bytes())
                .unwrap();
        }
        drop((users, logins));
        txn.commit().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let last = |id| {
        let user = store.user(UserId(id)).unwrap().expect("the user is kept");
        (user.last_login_at, user.last_login_ip)
    };
    assert_eq!(last(1), (Some(200), Some("10.0.0.7".to_owned())));
    assert_eq!(last(2), (Some(300), None));
    assert_eq!(last(3), (None, None));
    store.close().unwrap();
    assert_eq!(stored_version(dir.path()), SCHEMA_VERSION);
}
