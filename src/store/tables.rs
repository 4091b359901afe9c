//! Every redb table RoomManager keeps, in one place.
//!
//! A table's name carries its layout version (`users_v1`): changing a layout means a new table
//! and a numbered step in `migrations.rs`, never an in-place reinterpretation of old bytes.
//! `meta` is the exception: it holds the schema version itself, so its name never changes.
//! Record values are JSON of the types in `crate::model`, decoded with error handling in
//! `codec.rs` (a damaged record is an error, never a panic).

use redb::TableDefinition;

/// Store-wide facts and id sequences, key → value: `schema_version`, `created_at` (unix
/// seconds), `instance_id`, `next_user_id`, `next_room_id`, `next_mail_id`, `next_login_seq`, `next_live_id`, `next_chat_seq`, `next_record_id`,
/// `next_comment_id`, `next_audit_seq`, `next_download_id`, `next_ip_ban_id`.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub const META_SCHEMA_VERSION: &str = "schema_version";
pub const META_CREATED_AT: &str = "created_at";
pub const META_INSTANCE_ID: &str = "instance_id";
pub const SEQ_USER: &str = "next_user_id";
pub const SEQ_ROOM: &str = "next_room_id";
pub const SEQ_MAIL: &str = "next_mail_id";
pub const SEQ_LOGIN: &str = "next_login_seq";
pub const SEQ_LIVE: &str = "next_live_id";
pub const SEQ_CHAT: &str = "next_chat_seq";
pub const SEQ_RECORD: &str = "next_record_id";
pub const SEQ_COMMENT: &str = "next_comment_id";
pub const SEQ_AUDIT: &str = "next_audit_seq";
pub const SEQ_DOWNLOAD: &str = "next_download_id";
pub const SEQ_IP_BAN: &str = "next_ip_ban_id";

/// User id → `model::User`.
pub const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("users_v1");
/// Lower-cased username → user id (registered users only).
pub const USERNAMES: TableDefinition<&str, u64> = TableDefinition::new("usernames_v1");
/// Lower-cased email → user id (registered users only).
pub const EMAILS: TableDefinition<&str, u64> = TableDefinition::new("emails_v1");
/// Verification token hash → `model::VerificationToken` (kept after use, so a second click
/// can say "already verified", until the purge forgets it `accounts.unverified_grace_secs`
/// after it expired).
pub const VERIFY_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("verify_tokens_v1");
/// Session token hash → `model::Session`.
pub const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions_v1");
/// Room id → `model::Room`.
pub const ROOMS: TableDefinition<u64, &[u8]> = TableDefinition::new("rooms_v1");
/// Mail id → `model::QueuedMail`: messages not yet delivered.
pub const MAIL_QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("mail_queue_v1");
/// (unix seconds, sequence) → `model::LoginEvent`, in time order; kept for
/// `accounts.login_events_days`, then purged.
pub const LOGINS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("logins_v1");
/// Live session id → `model::LiveSession`.
pub const LIVES: TableDefinition<u64, &[u8]> = TableDefinition::new("lives_v1");
/// (live session id, sequence) → `model::StoredDanmaku`, in the order they were sent.
pub const DANMAKU: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("danmaku_v1");
/// Live session id → how many danmaku the ledger holds for it, kept by the chat writer (sessions
/// stored before this table existed have no row: their ledger is counted).
pub const DANMAKU_COUNTS: TableDefinition<u64, u64> = TableDefinition::new("danmaku_counts_v1");
/// (live session id, sequence) → `model::GiftEntry`: the gift ledger.
pub const GIFTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("gifts_v1");
/// User id → list of `model::Ban` (expired ones are kept for the record).
pub const BANS: TableDefinition<u64, &[u8]> = TableDefinition::new("bans_v1");
/// Record id → `model::Record`.
pub const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records_v1");
/// (record id, comment id) → `model::RecordComment`, oldest first.
pub const RECORD_COMMENTS: TableDefinition<(u64, u64), &[u8]> =
    TableDefinition::new("record_comments_v1");
/// Record id → `model::RecordRemoval`: deleted records whose media is still to be removed.
pub const RECORD_REMOVALS: TableDefinition<u64, &[u8]> = TableDefinition::new("record_removals_v1");
/// User id → `model::PushKey`: a host's push credentials (rtmp backend).
pub const PUSH_KEYS: TableDefinition<u64, &[u8]> = TableDefinition::new("push_keys_v1");
/// Push `live_id` → user id, to find the host of a publish.
pub const PUSH_IDS: TableDefinition<&str, u64> = TableDefinition::new("push_ids_v1");
/// (record id, viewer's user id) → `model::RecordViewer`: who watched a recording, how long.
pub const RECORD_VIEWERS: TableDefinition<(u64, u64), &[u8]> =
    TableDefinition::new("record_viewers_v1");
/// (record id, unix day) → views counted that day (UTC).
pub const RECORD_DAYS: TableDefinition<(u64, u64), u64> = TableDefinition::new("record_days_v1");
/// Lower-cased admin name → `model::Admin`.
pub const ADMINS: TableDefinition<&str, &[u8]> = TableDefinition::new("admins_v1");
/// Admin session token hash → `model::AdminSession` (apart from users' sessions, so neither kind
/// of token is ever taken for the other).
pub const ADMIN_SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("admin_sessions_v1");
/// First-run setup token hash → unix seconds when it stops working. At most one row, and only
/// while no admin exists.
pub const ADMIN_SETUP: TableDefinition<&str, u64> = TableDefinition::new("admin_setup_v1");
/// (unix seconds, sequence) → `model::AuditEntry`: every admin action, in time order.
pub const AUDIT: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("audit_v1");
/// Download id → `model::Download`: the files on the downloads page (their content is in
/// `DATA_DIR/downloads/<id>`).
pub const DOWNLOADS: TableDefinition<u64, &[u8]> = TableDefinition::new("downloads_v1");
/// Unix hour (UTC) → (password logins, guest logins) that hour: the logins' roll-up, written with
/// each login event and kept after the events are purged.
pub const LOGIN_HOURS: TableDefinition<u64, (u64, u64)> = TableDefinition::new("login_hours_v1");
/// Unix day (UTC) → (password logins, guest logins, distinct registered users who logged in).
pub const LOGIN_DAYS: TableDefinition<u64, (u64, u64, u64)> = TableDefinition::new("login_days_v1");
/// (unix day, user id): the registered users who logged in that day, so a second login of the
/// day does not count them again; purged with the login events.
pub const LOGIN_DAY_USERS: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("login_day_users_v1");
/// (unix day, record id) → (views counted, milliseconds watched) that day: the site's watch
/// roll-up. Unlike `record_days_v1` it outlives a deleted recording, as the views did happen.
pub const WATCH_DAYS: TableDefinition<(u64, u64), (u64, u64)> =
    TableDefinition::new("watch_days_v1");
/// Unix day (UTC) → (most people in live rooms at once that day, unix time it was first
/// reached), from the viewer counts sampled while the server runs.
pub const VIEWER_PEAKS: TableDefinition<u64, (u64, u64)> = TableDefinition::new("viewer_peaks_v1");
/// Mail id → `model::SentMail`: the latest delivered messages, for the admin's mail page;
/// bounded to `store::MAIL_SENT_KEPT`.
pub const MAIL_SENT: TableDefinition<u64, &[u8]> = TableDefinition::new("mail_sent_v1");
/// IP ban id → `model::IpBan`: every IP ban given, lifted and expired ones kept for the record.
pub const IP_BANS: TableDefinition<u64, &[u8]> = TableDefinition::new("ip_bans_v1");
/// User id → the language tag (`i18n::Lang::tag`) the registered user's mail is written in: the
/// language they registered in, then the one they last switched to.
pub const USER_LANGS: TableDefinition<u64, &str> = TableDefinition::new("user_langs_v1");
