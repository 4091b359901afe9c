//! Model: the plain data every part shares — id newtypes and the records the store keeps.
//!
//! Owns: the shape of persisted records (serialised as JSON inside the store, so a field added
//! later with `#[serde(default)]` reads old records fine). Calls: nothing (config's `IpNet` is used as a plain value).

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A user, registered or guest.
    UserId
);
id_type!(
    /// A host's room; every registered, verified user owns exactly one.
    RoomId
);
id_type!(
    /// A message in the outgoing mail queue.
    MailId
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserKind {
    Registered,
    Guest,
}

/// A user account. Guests have no username, email or password.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub kind: UserKind,
    pub username: Option<String>,
    pub email: Option<String>,
    /// argon2id PHC string.
    pub password_hash: Option<String>,
    pub nickname: String,
    /// Unix seconds of the first successful verification click.
    pub verified_at: Option<u64>,
    pub created_at: u64,
    /// Unix seconds of the last authenticated request, updated coarsely (guest purge uses it).
    pub last_seen: u64,
    /// File name under the avatars folder.
    pub avatar: Option<String>,
    pub room_id: Option<RoomId>,
    /// Hash of the verification token that is currently valid, if any.
    pub pending_verification: Option<TokenHash>,
    /// Unix seconds of the last login (a password login or a guest's start), kept on the row so
    /// the admin's users list need not scan the login events.
    #[serde(default)]
    pub last_login_at: Option<u64>,
    /// The client address of that login.
    #[serde(default)]
    pub last_login_ip: Option<String>,
}

impl User {
    pub fn is_verified(&self) -> bool {
        self.verified_at.is_some()
    }
}

/// SHA-256 of a secret token, hex-encoded. Only hashes are stored; the token itself is shown
/// once (in a link or a login answer) and never kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenHash(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    Pending,
    Used,
    /// A newer link was sent for the same account.
    Superseded,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerificationToken {
    pub user_id: UserId,
    pub created_at: u64,
    pub expires_at: u64,
    pub state: TokenState,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub user_id: UserId,
    pub created_at: u64,
    pub expires_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Room {
    pub id: RoomId,
    pub owner: UserId,
    pub name: String,
    pub description: String,
    /// File name under the covers folder.
    pub cover: Option<String>,
}

/// An email waiting to go out (or to be retried).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedMail {
    pub id: MailId,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub created_at: u64,
    pub attempts: u32,
    /// Unix seconds; the mailer does not try before.
    pub next_attempt_at: u64,
    pub last_error: Option<String>,
}

/// A delivered message, as the admin's mail page lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SentMail {
    pub id: MailId,
    pub to: String,
    pub subject: String,
    /// Kept only for the outbox transport, whose files hold it anyway (an admin opens a
    /// verification link from there); a message sent by SMTP went to its recipient alone.
    pub text: Option<String>,
    pub created_at: u64,
    pub delivered_at: u64,
    /// Failed attempts before it went.
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginKind {
    Password,
    Guest,
}

/// One successful login or guest creation, for the statistics pages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginEvent {
    pub at: u64,
    pub user_id: UserId,
    pub kind: LoginKind,
    /// The client's address (events stored before it was kept have none).
    #[serde(default)]
    pub ip: Option<String>,
}

id_type!(
    /// One live session of a room: from `start_live` to `stop_live` or the room's close.
    LiveSessionId
);
id_type!(
    /// A recording of a live session, listed for replay.
    RecordId
);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveSession {
    pub id: LiveSessionId,
    pub room: RoomId,
    pub host: UserId,
    pub title: String,
    pub started_at: u64,
    pub ended_at: Option<u64>,
    /// `ended_at` is a guess (the last sign of life of a session a stopped server left live),
    /// not the instant the host stopped: its recording's window does not end there.
    #[serde(default)]
    pub ended_estimated: bool,
    /// The host stream's id at the media plane, to find its recording.
    pub stream: String,
    /// What the media plane filed this session's recorded parts under (a host's stream id
    /// outlives sessions); `None` when it files none, or for sessions stored before it did.
    #[serde(default)]
    pub recording_tag: Option<String>,
    /// The room's name when the session started (a record's default title starts with it);
    /// empty for sessions stored before it was kept.
    #[serde(default)]
    pub room_name: String,
    /// The end-of-session work is done: the recording was listed, or the media plane had none.
    /// A session a stopped server left unsettled is finished at the next start.
    #[serde(default)]
    pub settled: bool,
    /// The stretches viewers watched a co-stream's mix instead of the host, in time order; the
    /// recording shows the mix there.
    #[serde(default)]
    pub co_streams: Vec<CoStreamSpan>,
}

impl LiveSession {
    /// Adds a co-stream, or ends the one with the same mixed stream (notes of a start and its
    /// end may come in either order); keeps them in time order.
    pub fn note_co_stream(&mut self, span: CoStreamSpan) {
        match self.co_streams.iter_mut().find(|s| s.mixed == span.mixed) {
            Some(known) => known.to = known.to.or(span.to),
            None => {
                self.co_streams.push(span);
                self.co_streams.sort_by_key(|s| s.from);
            }
        }
    }
}

/// A co-stream of a live session: its mixed stream's id at the media plane and when viewers
/// were switched to it and back (unix seconds; `to` is `None` until it ends, or for one the
/// session's end ended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoStreamSpan {
    pub mixed: String,
    pub from: u64,
    pub to: Option<u64>,
}

/// A danmaku as stored for replay.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredDanmaku {
    pub live: LiveSessionId,
    /// The room's number for it within the live session, from 1 (0 in rows stored before
    /// danmaku had one: those cannot be deleted one by one).
    #[serde(default)]
    pub id: u64,
    pub user_id: UserId,
    pub nickname: String,
    pub text: String,
    /// Milliseconds since the live session started, to place it on the replay's timeline.
    pub offset_ms: u64,
    pub at: u64,
}

/// Characters of a deleted danmaku the audit log keeps, enough to tell what was said.
const DANMAKU_EXCERPT_CHARS: usize = 40;

/// A danmaku taken back (by an admin, or the room's host): the ledger drops it, so a recording's
/// replay never shows it, and the session's count goes down by one.
#[derive(Debug, Clone)]
pub struct DanmakuRemoval {
    pub live: LiveSessionId,
    /// [`StoredDanmaku::id`].
    pub id: u64,
    /// An admin's entry, its `target` naming the room and the danmaku; the ledger adds what the
    /// danmaku said when it writes it.
    pub audit: Option<AuditEntry>,
}

impl DanmakuRemoval {
    /// The audit entry as stored, with an excerpt of `text` (the deleted danmaku, when found).
    pub fn audit_entry(&self, text: Option<&str>) -> Option<AuditEntry> {
        let mut entry = self.audit.clone()?;
        if let Some(text) = text {
            let mut excerpt: String = text.chars().take(DANMAKU_EXCERPT_CHARS).collect();
            if excerpt.len() < text.len() {
                excerpt.push('…');
            }
            entry.target = format!("{} {excerpt:?}", entry.target);
        }
        Some(entry)
    }
}

/// One line of the gift ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GiftEntry {
    pub live: LiveSessionId,
    pub room: RoomId,
    pub giver: UserId,
    pub gift: String,
    pub count: u32,
    pub value: u64,
    pub at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BanScope {
    /// No danmaku, gifts, likes or co-streaming requests.
    Chat,
    /// No going live.
    Stream,
}

impl BanScope {
    pub fn as_str(self) -> &'static str {
        match self {
            BanScope::Chat => "chat",
            BanScope::Stream => "stream",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ban {
    pub scope: BanScope,
    pub reason: String,
    pub created_at: u64,
    /// Unix seconds; `None` means until lifted.
    pub expires_at: Option<u64>,
    /// When an admin lifted it (unix seconds); a lifted ban stays for the record.
    #[serde(default)]
    pub lifted_at: Option<u64>,
}

impl Ban {
    pub fn in_force(&self, now: u64) -> bool {
        self.lifted_at.is_none() && self.expires_at.is_none_or(|end| now < end)
    }
}

/// A recording listed for replay.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: RecordId,
    pub room: RoomId,
    pub host: UserId,
    pub live: LiveSessionId,
    pub title: String,
    pub started_at: u64,
    pub duration_secs: u64,
    pub url: String,
    /// The host stream's id at the media plane (the session's `stream`), to delete its media.
    #[serde(default)]
    pub stream: String,
    #[serde(default)]
    pub thumbnail_url: Option<String>,
    /// Counted views (once per viewer per `records.view_window_secs`).
    #[serde(default)]
    pub views: u64,
    #[serde(default)]
    pub unique_viewers: u64,
    /// Whole seconds of `watch_ms_total`.
    #[serde(default)]
    pub watch_secs_total: u64,
    #[serde(default)]
    pub watch_ms_total: u64,
    #[serde(default)]
    pub comments_count: u64,
}

id_type!(
    /// A comment on a recording.
    CommentId
);

/// A comment on a recording, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordComment {
    pub id: CommentId,
    pub record: RecordId,
    pub author: UserId,
    /// The author's nickname when they wrote it (as danmaku keep theirs).
    pub nickname: String,
    pub text: String,
    /// Where in the video it refers to, in milliseconds from the start.
    pub position_ms: Option<u64>,
    pub created_at: u64,
}

/// A deleted recording whose media is still to be removed from the media plane.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordRemoval {
    pub record: RecordId,
    /// The host stream's id at the media plane.
    pub stream: String,
    /// The mixed streams of the session's co-streams: the media plane may keep recordings of
    /// them too.
    #[serde(default)]
    pub mixes: Vec<String>,
    pub url: String,
    pub thumbnail_url: Option<String>,
    pub duration_secs: u64,
    pub attempts: u32,
    /// Unix seconds; the worker does not try before.
    pub next_attempt_at: u64,
    pub last_error: Option<String>,
}

/// One viewer's watching of one recording, over all their views of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordViewer {
    pub record: RecordId,
    pub user_id: UserId,
    /// Views counted (at most one per `records.view_window_secs`).
    pub views: u64,
    pub watched_ms: u64,
    pub first_at: u64,
    pub last_at: u64,
    /// Unix seconds of the last counted view: the next one counts from
    /// `counted_at + view_window_secs` on.
    pub counted_at: u64,
}

/// A host's standing push credentials for the rtmp backend: OBS keeps them between sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushKey {
    pub live_id: String,
    pub live_code: String,
    pub created_at: u64,
    pub last_publish_at: Option<u64>,
    pub last_publish_addr: Option<String>,
}

/// An administrator's account: separate from users (no user session gives an admin right, and
/// no admin session a user right). Named by `name`, unique without regard to case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Admin {
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub created_at: u64,
    pub last_login_at: Option<u64>,
    pub last_login_ip: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminSession {
    /// The admin's name as stored (its lower case is the key of `admins_v1`).
    pub admin: String,
    pub created_at: u64,
    pub expires_at: u64,
}

/// What an admin did, as the audit log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// An admin account was created (first-run setup or the command line).
    CreateAdmin,
    /// An admin's password was changed (command line).
    ChangeAdminPassword,
    /// An admin account was deleted (command line).
    DeleteAdmin,
    DeleteRecord,
    /// A file was added to the downloads page.
    AddDownload,
    /// A file was taken off the downloads page.
    DeleteDownload,
    /// A user was banned from chatting or streaming.
    Ban,
    /// A user's bans of one scope were lifted.
    Unban,
    /// A room was closed by an admin.
    CloseRoom,
    /// An admin marked an unverified email verified.
    MarkVerified,
    /// An admin sent an unverified account a new verification link.
    ResendVerification,
    /// An admin deleted a user's account.
    DeleteUser,
    /// An admin deleted a danmaku in a live room.
    DeleteDanmaku,
    /// An admin sent a test mail from the mail page.
    SendTestMail,
    /// An admin banned an IP address or range from guest use.
    IpBan,
    /// An admin lifted an IP ban.
    IpUnban,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::CreateAdmin => "create_admin",
            AuditAction::ChangeAdminPassword => "change_admin_password",
            AuditAction::DeleteAdmin => "delete_admin",
            AuditAction::DeleteRecord => "delete_record",
            AuditAction::AddDownload => "add_download",
            AuditAction::DeleteDownload => "delete_download",
            AuditAction::Ban => "ban",
            AuditAction::Unban => "unban",
            AuditAction::CloseRoom => "close_room",
            AuditAction::MarkVerified => "mark_verified",
            AuditAction::ResendVerification => "resend_verification",
            AuditAction::DeleteUser => "delete_user",
            AuditAction::DeleteDanmaku => "delete_danmaku",
            AuditAction::SendTestMail => "send_test_mail",
            AuditAction::IpBan => "ip_ban",
            AuditAction::IpUnban => "ip_unban",
        }
    }
}

/// One entry of the audit log: who did what to which target, why, when, from where.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: u64,
    /// The admin's name; `cli` for the command line on the server's machine.
    pub admin: String,
    pub action: AuditAction,
    /// What was acted on, as `kind:id` (`record:12`, `admin:alice`).
    pub target: String,
    pub reason: String,
    /// The client address; empty for the command line.
    pub ip: String,
}

id_type!(
    /// A file on the downloads page; also its file's name under `DATA_DIR/downloads/`.
    DownloadId
);

/// A file the admins offer on the downloads page (a client build, an OBS profile, a how-to).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Download {
    pub id: DownloadId,
    pub title: String,
    pub version: String,
    pub description: String,
    /// The name it is offered under, as the admin's upload called it (checked to be a plain
    /// name). Shown and sent in `Content-Disposition` only: the file on disk is named by the id.
    pub filename: String,
    pub size: u64,
    /// SHA-256 of the content, lower-case hex; also the strong `ETag`.
    pub sha256: String,
    pub content_type: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The admin who uploaded it.
    pub uploaded_by: String,
}

id_type!(
    /// An IP ban, in force or in the history.
    IpBanId
);

/// A ban of an address or a range from guest use: no new guests from it, no room joins of
/// guest sessions from it. Registered users are banned by account instead ([`Ban`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IpBan {
    pub id: IpBanId,
    pub range: crate::config::IpNet,
    pub reason: String,
    /// The admin who gave it.
    pub admin: String,
    pub created_at: u64,
    /// Unix seconds; `None` means until lifted.
    pub expires_at: Option<u64>,
    /// When an admin lifted it (unix seconds); a lifted ban stays for the record.
    pub lifted_at: Option<u64>,
}

impl IpBan {
    pub fn in_force(&self, now: u64) -> bool {
        self.lifted_at.is_none() && self.expires_at.is_none_or(|end| now < end)
    }
}
