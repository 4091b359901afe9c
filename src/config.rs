//! Configuration: the typed settings read from `roommanager.toml`, their defaults and validation.
//!
//! Owns: parsing the TOML file, command-line overrides and the rules a value must meet.
//! Calls: nothing else in the crate. Everything else receives a validated [`Config`].
//!
//! The annotated default file at the repository root is embedded as [`DEFAULT_TOML`]; a unit test
//! keeps it equal to [`Config::default`], so the documentation cannot drift from the code.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The documented default configuration, byte for byte the file at the repository root.
pub const DEFAULT_TOML: &str = include_str!("../roommanager.toml");

/// The config file looked for in the working directory when `--config` is not given.
pub const DEFAULT_PATH: &str = "roommanager.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid:\n{message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}` {problem}")]
    Invalid { key: &'static str, problem: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub accounts: AccountsConfig,
    pub admin: AdminConfig,
    pub limits: LimitsConfig,
    pub email: EmailConfig,
    pub uploads: UploadsConfig,
    pub downloads: DownloadsConfig,
    pub rooms: RoomsConfig,
    pub records: RecordsConfig,
    pub media: MediaConfig,
    pub gifts: Vec<GiftConfig>,
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub public_url: String,
    pub max_body_bytes: usize,
    pub shutdown_grace_secs: u64,
    pub header_timeout_secs: u64,
    pub keepalive_idle_secs: u64,
    /// 0 turns the cap off.
    pub max_connections_per_ip: usize,
    pub trusted_proxies: Vec<IpNet>,
    pub metrics_token: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            public_url: String::new(),
            max_body_bytes: 1024 * 1024,
            shutdown_grace_secs: 10,
            header_timeout_secs: 10,
            keepalive_idle_secs: 60,
            max_connections_per_ip: 64,
            trusted_proxies: Vec::new(),
            metrics_token: String::new(),
        }
    }
}

impl ServerConfig {
    /// Whether `ip` is one of `trusted_proxies`.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(ip))
    }
}

/// An IP address or a CIDR block (`10.0.0.0/8`, `fd00::/8`), as `server.trusted_proxies` lists
/// them. IPv4-mapped IPv6 blocks (`::ffff:10.0.0.0/104`) are kept as the IPv4 block they name,
/// so that they match the IPv4 addresses the server sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// The block's length in bits: 32 for one IPv4 address, 128 for one IPv6 address.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The same block named by its first address (`10.0.0.7/24` → `10.0.0.0/24`).
    pub fn network(self) -> IpNet {
        let addr = match self.addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::from(std::net::Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::from(std::net::Ipv6Addr::from(u128::from(v6) & mask))
            }
        };
        IpNet { addr, ..self }
    }

    /// Whether `ip` is inside the block (an IPv4-mapped `ip` counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not an IP address or a CIDR block like \"10.0.0.0/8\"");
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix.parse::<u8>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        if prefix > bits {
            return Err(bad());
        }
        Ok(match addr {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => IpNet {
                addr: addr.to_canonical(),
                prefix: prefix - 96,
            },
            _ => IpNet { addr, prefix },
        })
    }
}

impl TryFrom<String> for IpNet {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<IpNet> for String {
    fn from(net: IpNet) -> String {
        let full = if net.addr.is_ipv4() { 32 } else { 128 };
        if net.prefix == full {
            net.addr.to_string()
        } else {
            format!("{}/{}", net.addr, net.prefix)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsConfig {
    pub verification_ttl_secs: u64,
    pub unverified_grace_secs: u64,
    pub session_ttl_secs: u64,
    pub guest_idle_secs: u64,
    pub login_events_days: u64,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            verification_ttl_secs: 24 * 3600,
            unverified_grace_secs: 24 * 3600,
            session_ttl_secs: 30 * 24 * 3600,
            guest_idle_secs: 24 * 3600,
            login_events_days: 400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    pub session_ttl_secs: u64,
    pub setup_link_secs: u64,
    /// At most this many IP bans in force at once.
    pub max_ip_bans: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            session_ttl_secs: 12 * 3600,
            setup_link_secs: 3600,
            max_ip_bans: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub login_free_failures: u32,
    pub login_backoff_secs: u64,
    pub login_backoff_max_secs: u64,
    pub login_per_ip: u32,
    pub login_window_secs: u64,
    pub register_per_ip: u32,
    pub register_window_secs: u64,
    pub resend_per_ip: u32,
    pub resend_window_secs: u64,
    pub email_per_address: u32,
    pub email_window_secs: u64,
    pub guest_per_ip: u32,
    pub guest_window_secs: u64,
    pub max_tracked_keys: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            login_free_failures: 5,
            login_backoff_secs: 5,
            login_backoff_max_secs: 900,
            login_per_ip: 30,
            login_window_secs: 900,
            register_per_ip: 10,
            register_window_secs: 3600,
            resend_per_ip: 10,
            resend_window_secs: 3600,
            email_per_address: 5,
            email_window_secs: 3600,
            guest_per_ip: 30,
            guest_window_secs: 600,
            max_tracked_keys: 65536,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    Outbox,
    Smtp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    Starttls,
    Tls,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    pub transport: MailTransport,
    pub from: String,
    pub retry_min_secs: u64,
    pub retry_max_secs: u64,
    pub smtp: SmtpConfig,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            transport: MailTransport::Outbox,
            from: "RoomManager <roommanager@localhost>".to_owned(),
            retry_min_secs: 5,
            retry_max_secs: 900,
            smtp: SmtpConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: String,
    pub password: String,
    pub timeout_secs: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: "localhost".to_owned(),
            port: 587,
            security: SmtpSecurity::Starttls,
            username: String::new(),
            password: String::new(),
            timeout_secs: 15,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadsConfig {
    pub max_image_bytes: usize,
    pub decode_slots: usize,
    pub decode_wait_ms: u64,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        Self {
            max_image_bytes: 5 * 1024 * 1024,
            decode_slots: 0,
            decode_wait_ms: 2000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DownloadsConfig {
    pub max_bytes: u64,
}

/// The longest `rooms.coalesce_ms` accepted: a merged frame waits at most this long, so chat
/// stays live.
pub const MAX_COALESCE_MS: u64 = 50;

/// The largest `downloads.max_bytes` accepted: 1 TiB.
pub const MAX_DOWNLOAD_BYTES: u64 = 1 << 40;

impl Default for DownloadsConfig {
    fn default() -> Self {
        Self {
            max_bytes: 4 * 1024 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    pub host_grace_secs: u64,
    pub record_delay_secs: u64,
    pub recording_retry_secs: u64,
    pub recent_danmaku: usize,
    pub danmaku_max_chars: usize,
    pub chat_per_window: u32,
    pub chat_window_secs: u64,
    pub client_queue: usize,
    /// Milliseconds of a busy room's broadcast events merged into one frame (0: never merge).
    pub coalesce_ms: u64,
    pub max_frame_bytes: usize,
    pub media_timeout_secs: u64,
    pub media_attempts: u32,
    pub ws_ping_secs: u64,
    pub ws_idle_secs: u64,
    pub max_connections_per_user: usize,
    pub idle_close_secs: u64,
    /// Names in the host's `viewers` list; the rest are counted.
    pub viewers_listed: usize,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        Self {
            host_grace_secs: 60,
            record_delay_secs: 5,
            recording_retry_secs: 60,
            recent_danmaku: 50,
            danmaku_max_chars: 100,
            chat_per_window: 10,
            chat_window_secs: 10,
            client_queue: 256,
            coalesce_ms: 20,
            max_frame_bytes: 16 * 1024,
            media_timeout_secs: 10,
            media_attempts: 3,
            ws_ping_secs: 20,
            ws_idle_secs: 60,
            max_connections_per_user: 3,
            idle_close_secs: 30,
            viewers_listed: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordsConfig {
    pub view_window_secs: u64,
    pub heartbeat_max_gap_secs: u64,
    pub watch_flush_ms: u64,
    pub watch_flush_batch: usize,
    pub max_open_views: usize,
    pub max_views_per_viewer: usize,
    pub view_idle_secs: u64,
}

impl Default for RecordsConfig {
    fn default() -> Self {
        Self {
            view_window_secs: 1800,
            heartbeat_max_gap_secs: 60,
            watch_flush_ms: 1000,
            watch_flush_batch: 1000,
            max_open_views: 100_000,
            max_views_per_viewer: 8,
            view_idle_secs: 600,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaBackend {
    Rtmp,
    Http,
    Builtin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    pub backend: MediaBackend,
    /// Other origins (`scheme://host[:port]`) the room page may play video from; they join
    /// the pages' Content-Security-Policy.
    pub watch_origins: Vec<String>,
    pub rtmp: RtmpConfig,
    pub http: HttpMediaConfig,
    pub browser: BrowserPublishConfig,
    pub builtin: BuiltinConfig,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            backend: MediaBackend::Builtin,
            watch_origins: Vec::new(),
            rtmp: RtmpConfig::default(),
            http: HttpMediaConfig::default(),
            browser: BrowserPublishConfig::default(),
            builtin: BuiltinConfig::default(),
        }
    }
}

impl MediaConfig {
    /// Where publishers reach the RTMP ingest: the builtin listener's address on that backend,
    /// nginx's otherwise.
    pub fn rtmp_listen(&self) -> SocketAddr {
        match self.backend {
            MediaBackend::Builtin => self.builtin.rtmp_listen,
            MediaBackend::Rtmp | MediaBackend::Http => self.rtmp.rtmp_listen,
        }
    }
}

/// The `builtin` backend's own RTMP listener and its limits (the rest it shares with
/// `[media.rtmp]`: ffmpeg, public host, HLS lengths, re-encodes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuiltinConfig {
    pub rtmp_listen: SocketAddr,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub handshake_secs: u64,
    pub publish_secs: u64,
    pub idle_secs: u64,
    pub queue_bytes: usize,
    /// Where the co-stream mixers read the streams (HTTP-FLV); loopback only.
    pub relay_listen: SocketAddr,
}

impl Default for BuiltinConfig {
    fn default() -> Self {
        Self {
            rtmp_listen: SocketAddr::from(([0, 0, 0, 0], 1935)),
            max_connections: 256,
            max_connections_per_ip: 16,
            handshake_secs: 5,
            publish_secs: 10,
            idle_secs: 10,
            queue_bytes: 16 * 1024 * 1024,
            relay_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpConfig {
    pub manage_nginx: bool,
    pub nginx_binary: PathBuf,
    pub rtmp_module: PathBuf,
    pub ffmpeg_binary: PathBuf,
    pub rtmp_listen: SocketAddr,
    pub public_host: String,
    pub control_port: u16,
    pub hook_secret: String,
    pub hls_fragment_secs: u64,
    pub hls_playlist_secs: u64,
    pub max_reencodes: usize,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        Self {
            manage_nginx: true,
            nginx_binary: PathBuf::from("nginx"),
            rtmp_module: PathBuf::from("/usr/lib/nginx/modules/ngx_rtmp_module.so"),
            ffmpeg_binary: PathBuf::from("ffmpeg"),
            rtmp_listen: SocketAddr::from(([0, 0, 0, 0], 1935)),
            public_host: String::new(),
            control_port: 8936,
            hook_secret: String::new(),
            hls_fragment_secs: 2,
            hls_playlist_secs: 10,
            max_reencodes: 1,
        }
    }
}

/// Going live from the browser (`/ws/publish`): the ffmpeg each push runs and its limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrowserPublishConfig {
    pub enabled: bool,
    pub ffmpeg_binary: PathBuf,
    pub max_frame_bytes: usize,
    pub max_kbps: u64,
    pub queue_bytes: usize,
    pub video_kbps: u64,
    pub idle_secs: u64,
}

impl Default for BrowserPublishConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ffmpeg_binary: PathBuf::from("ffmpeg"),
            max_frame_bytes: 1024 * 1024,
            max_kbps: 16_000,
            queue_bytes: 4 * 1024 * 1024,
            video_kbps: 2_500,
            idle_secs: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpMediaConfig {
    pub rtp_url: String,
    pub distributor_url: String,
    pub processor_url: String,
    pub timeout_secs: u64,
}

impl Default for HttpMediaConfig {
    fn default() -> Self {
        Self {
            rtp_url: "http://127.0.0.1:9001".to_owned(),
            distributor_url: "http://127.0.0.1:9002".to_owned(),
            processor_url: "http://127.0.0.1:9003".to_owned(),
            timeout_secs: 5,
        }
    }
}

/// One entry of the gift catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GiftConfig {
    pub id: String,
    pub name: String,
    /// The name in other languages, by language tag (`zh-CN`); `name` where none is given.
    #[serde(default)]
    pub names: BTreeMap<String, String>,
    pub icon: String,
    pub value: u64,
}

/// The longest gift name, in characters: it fits on a button and in a danmaku-sized line.
pub const MAX_GIFT_NAME_CHARS: usize = 32;

impl GiftConfig {
    /// The gift's name for a reader of the language `tag`.
    pub fn name_in(&self, tag: &str) -> &str {
        self.names.get(tag).map_or(&self.name, String::as_str)
    }
}

fn default_gifts() -> Vec<GiftConfig> {
    let gift = |id: &str, name: &str, zh: &str, icon: &str, value| GiftConfig {
        id: id.to_owned(),
        name: name.to_owned(),
        names: BTreeMap::from([("zh-CN".to_owned(), zh.to_owned())]),
        icon: icon.to_owned(),
        value,
    };
    vec![
        gift("heart", "Heart", "爱心", "❤️", 1),
        gift("flower", "Flower", "鲜花", "🌸", 5),
        gift("rocket", "Rocket", "火箭", "🚀", 100),
    ]
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            storage: StorageConfig::default(),
            accounts: AccountsConfig::default(),
            admin: AdminConfig::default(),
            limits: LimitsConfig::default(),
            email: EmailConfig::default(),
            uploads: UploadsConfig::default(),
            downloads: DownloadsConfig::default(),
            rooms: RoomsConfig::default(),
            records: RecordsConfig::default(),
            media: MediaConfig::default(),
            gifts: default_gifts(),
            log: LogConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
        }
    }
}

/// Values given on the command line; each one that is set replaces the file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

/// Where the effective configuration came from, for `check-config` and the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    BuiltInDefaults,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::BuiltInDefaults => f.write_str("built-in defaults (no config file)"),
        }
    }
}

impl Config {
    /// Loads the configuration: the file named by `--config` (which must exist), otherwise
    /// `./roommanager.toml` if present, otherwise the built-in defaults; then applies overrides
    /// and validates the result.
    pub fn load(
        explicit_path: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<(Config, Source), ConfigError> {
        let (mut config, source) = match explicit_path {
            Some(path) => (Self::from_file(path)?, Source::File(path.to_owned())),
            None => {
                let path = Path::new(DEFAULT_PATH);
                if path.exists() {
                    (Self::from_file(path)?, Source::File(path.to_owned()))
                } else {
                    (Config::default(), Source::BuiltInDefaults)
                }
            }
        };
        config.apply(overrides);
        config.validate()?;
        Ok((config, source))
    }

    fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text; the error is toml's own report, which names the key and shows the line.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    pub fn apply(&mut self, overrides: &Overrides) {
        if let Some(listen) = overrides.listen {
            self.server.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            self.storage.data_dir = dir.clone();
        }
    }

    /// Rules that the types alone do not express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const MIN_BODY: usize = 1024;
        const MAX_BODY: usize = 1024 * 1024 * 1024;
        if !(MIN_BODY..=MAX_BODY).contains(&self.server.max_body_bytes) {
            return Err(ConfigError::Invalid {
                key: "server.max_body_bytes",
                problem: format!(
                    "must be between {MIN_BODY} and {MAX_BODY} bytes, got {}",
                    self.server.max_body_bytes
                ),
            });
        }
        if self.server.shutdown_grace_secs > 3600 {
            return Err(ConfigError::Invalid {
                key: "server.shutdown_grace_secs",
                problem: format!(
                    "must be at most 3600 seconds, got {}",
                    self.server.shutdown_grace_secs
                ),
            });
        }
        for (key, secs) in [
            (
                "server.header_timeout_secs",
                self.server.header_timeout_secs,
            ),
            (
                "server.keepalive_idle_secs",
                self.server.keepalive_idle_secs,
            ),
            ("rooms.ws_ping_secs", self.rooms.ws_ping_secs),
            (
                "records.heartbeat_max_gap_secs",
                self.records.heartbeat_max_gap_secs,
            ),
            ("rooms.ws_idle_secs", self.rooms.ws_idle_secs),
            (
                "rooms.recording_retry_secs",
                self.rooms.recording_retry_secs,
            ),
        ] {
            if !(1..=3600).contains(&secs) {
                return Err(ConfigError::Invalid {
                    key,
                    problem: format!("must be between 1 and 3600 seconds, got {secs}"),
                });
            }
        }
        if self.rooms.ws_idle_secs <= self.rooms.ws_ping_secs {
            return Err(ConfigError::Invalid {
                key: "rooms.ws_idle_secs",
                problem: format!(
                    "must be longer than rooms.ws_ping_secs ({} s), or every client would be \
                     dropped before it could answer a ping; got {}",
                    self.rooms.ws_ping_secs, self.rooms.ws_idle_secs
                ),
            });
        }
        if self.rooms.coalesce_ms > MAX_COALESCE_MS {
            return Err(ConfigError::Invalid {
                key: "rooms.coalesce_ms",
                problem: format!(
                    "must be between 0 (off) and {MAX_COALESCE_MS} milliseconds, got {}",
                    self.rooms.coalesce_ms
                ),
            });
        }
        if !(10..=60_000).contains(&self.records.watch_flush_ms) {
            return Err(ConfigError::Invalid {
                key: "records.watch_flush_ms",
                problem: format!(
                    "must be between 10 and 60000 milliseconds, got {}",
                    self.records.watch_flush_ms
                ),
            });
        }
        for (key, count) in [
            ("records.watch_flush_batch", self.records.watch_flush_batch),
            ("records.max_open_views", self.records.max_open_views),
            (
                "records.max_views_per_viewer",
                self.records.max_views_per_viewer,
            ),
        ] {
            if count == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    problem: "must be at least 1".to_owned(),
                });
            }
        }
        let token = &self.server.metrics_token;
        let token_chars_ok = token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
        if !token.is_empty() && (token.len() < 16 || !token_chars_ok) {
            return Err(ConfigError::Invalid {
                key: "server.metrics_token",
                problem: "must be empty (loopback callers only) or at least 16 characters of \
                          letters, digits, '-', '_', '.' and '~'"
                    .to_owned(),
            });
        }
        let url = &self.server.public_url;
        let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
        if !url.is_empty() && !scheme_ok
            || url.trim_end_matches('/').ends_with("//")
            || url.contains(char::is_whitespace)
        {
            return Err(ConfigError::Invalid {
                key: "server.public_url",
                problem: format!("must be an http:// or https:// address, got {url:?}"),
            });
        }
        let r = &self.rooms;
        let m = &self.media;
        let a = &self.accounts;
        let l = &self.limits;
        let b = &m.browser;
        let positive: [(&'static str, u64); 43] = [
            (
                "media.builtin.max_connections",
                m.builtin.max_connections as u64,
            ),
            (
                "media.builtin.max_connections_per_ip",
                m.builtin.max_connections_per_ip as u64,
            ),
            ("media.builtin.handshake_secs", m.builtin.handshake_secs),
            ("media.builtin.publish_secs", m.builtin.publish_secs),
            ("media.builtin.idle_secs", m.builtin.idle_secs),
            ("media.builtin.queue_bytes", m.builtin.queue_bytes as u64),
            ("admin.session_ttl_secs", self.admin.session_ttl_secs),
            ("admin.setup_link_secs", self.admin.setup_link_secs),
            ("admin.max_ip_bans", self.admin.max_ip_bans as u64),
            ("media.rtmp.hls_fragment_secs", m.rtmp.hls_fragment_secs),
            ("media.rtmp.hls_playlist_secs", m.rtmp.hls_playlist_secs),
            ("media.http.timeout_secs", m.http.timeout_secs),
            ("media.browser.max_frame_bytes", b.max_frame_bytes as u64),
            ("media.browser.max_kbps", b.max_kbps),
            ("media.browser.queue_bytes", b.queue_bytes as u64),
            ("media.browser.video_kbps", b.video_kbps),
            ("media.browser.idle_secs", b.idle_secs),
            ("rooms.host_grace_secs", r.host_grace_secs),
            ("rooms.recent_danmaku", r.recent_danmaku as u64),
            ("rooms.danmaku_max_chars", r.danmaku_max_chars as u64),
            ("rooms.chat_per_window", r.chat_per_window.into()),
            ("rooms.chat_window_secs", r.chat_window_secs),
            ("rooms.client_queue", r.client_queue as u64),
            ("rooms.media_timeout_secs", r.media_timeout_secs),
            (
                "rooms.max_connections_per_user",
                r.max_connections_per_user as u64,
            ),
            ("accounts.verification_ttl_secs", a.verification_ttl_secs),
            ("accounts.session_ttl_secs", a.session_ttl_secs),
            ("accounts.guest_idle_secs", a.guest_idle_secs),
            ("accounts.login_events_days", a.login_events_days),
            ("limits.login_backoff_secs", l.login_backoff_secs),
            ("limits.login_per_ip", l.login_per_ip.into()),
            ("limits.login_window_secs", l.login_window_secs),
            ("limits.register_per_ip", l.register_per_ip.into()),
            ("limits.register_window_secs", l.register_window_secs),
            ("limits.resend_per_ip", l.resend_per_ip.into()),
            ("limits.resend_window_secs", l.resend_window_secs),
            ("limits.email_per_address", l.email_per_address.into()),
            ("limits.email_window_secs", l.email_window_secs),
            ("limits.guest_per_ip", l.guest_per_ip.into()),
            ("limits.guest_window_secs", l.guest_window_secs),
            ("limits.max_tracked_keys", l.max_tracked_keys as u64),
            ("email.retry_min_secs", self.email.retry_min_secs),
            ("email.smtp.timeout_secs", self.email.smtp.timeout_secs),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Invalid {
                key,
                problem: "must be greater than 0".to_owned(),
            });
        }
        if b.queue_bytes < b.max_frame_bytes {
            return Err(ConfigError::Invalid {
                key: "media.browser.queue_bytes",
                problem: format!(
                    "must hold at least one frame (media.browser.max_frame_bytes = {})",
                    b.max_frame_bytes
                ),
            });
        }
        if let Some(bad) = m.watch_origins.iter().find(|o| !is_origin(o)) {
            return Err(ConfigError::Invalid {
                key: "media.watch_origins",
                problem: format!(
                    "must list origins such as \"http://192.168.1.20:8090\" (http or https, \
                     a host, an optional port, nothing after it), got {bad:?}"
                ),
            });
        }
        // Durations are added to clock readings; a century is more than any rule needs and
        // keeps every sum far from overflowing.
        const CENTURY_SECS: u64 = 100 * 365 * 24 * 3600;
        for (key, secs) in [
            ("accounts.verification_ttl_secs", a.verification_ttl_secs),
            ("accounts.unverified_grace_secs", a.unverified_grace_secs),
            ("accounts.session_ttl_secs", a.session_ttl_secs),
            ("accounts.guest_idle_secs", a.guest_idle_secs),
            ("admin.session_ttl_secs", self.admin.session_ttl_secs),
            ("admin.setup_link_secs", self.admin.setup_link_secs),
            (
                "accounts.login_events_days",
                a.login_events_days.saturating_mul(86400),
            ),
            ("limits.login_backoff_max_secs", l.login_backoff_max_secs),
            ("limits.login_window_secs", l.login_window_secs),
            ("limits.register_window_secs", l.register_window_secs),
            ("limits.resend_window_secs", l.resend_window_secs),
            ("limits.email_window_secs", l.email_window_secs),
            ("limits.guest_window_secs", l.guest_window_secs),
        ] {
            if secs > CENTURY_SECS {
                return Err(ConfigError::Invalid {
                    key,
                    problem: "must be at most a hundred years".to_owned(),
                });
            }
        }
        if l.login_backoff_max_secs < l.login_backoff_secs {
            return Err(ConfigError::Invalid {
                key: "limits.login_backoff_max_secs",
                problem: "must not be smaller than limits.login_backoff_secs".to_owned(),
            });
        }
        const MIN_KEYS: usize = 16;
        const MAX_KEYS: usize = 16 * 1024 * 1024;
        if !(MIN_KEYS..=MAX_KEYS).contains(&l.max_tracked_keys) {
            return Err(ConfigError::Invalid {
                key: "limits.max_tracked_keys",
                problem: format!(
                    "must be between {MIN_KEYS} and {MAX_KEYS}, got {}",
                    l.max_tracked_keys
                ),
            });
        }
        // Every guest's join looks through the bans in force: a bound keeps that cheap.
        const MAX_IP_BANS: usize = 100_000;
        if self.admin.max_ip_bans > MAX_IP_BANS {
            return Err(ConfigError::Invalid {
                key: "admin.max_ip_bans",
                problem: format!(
                    "must be at most {MAX_IP_BANS}, got {}",
                    self.admin.max_ip_bans
                ),
            });
        }
        for (key, url) in [
            ("media.http.rtp_url", &m.http.rtp_url),
            ("media.http.distributor_url", &m.http.distributor_url),
            ("media.http.processor_url", &m.http.processor_url),
        ] {
            // The services are on the LAN: this build speaks plain HTTP to them.
            if !url.starts_with("http://") {
                return Err(ConfigError::Invalid {
                    key,
                    problem: format!("must be an http:// address, got {url:?}"),
                });
            }
        }
        // One RTMP message must fit the queue to ffmpeg, or every large keyframe drops its
        // publisher.
        if m.builtin.queue_bytes < crate::media::builtin::MAX_MESSAGE_BYTES {
            return Err(ConfigError::Invalid {
                key: "media.builtin.queue_bytes",
                problem: format!(
                    "must be at least {} (the largest RTMP message accepted), got {}",
                    crate::media::builtin::MAX_MESSAGE_BYTES,
                    m.builtin.queue_bytes
                ),
            });
        }
        // The relay checks no key: only this machine may reach it.
        if !m.builtin.relay_listen.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                key: "media.builtin.relay_listen",
                problem: format!(
                    "must be a loopback address (127.0.0.1 or ::1), got {}",
                    m.builtin.relay_listen
                ),
            });
        }
        if m.rtmp.control_port == 0 {
            return Err(ConfigError::Invalid {
                key: "media.rtmp.control_port",
                problem: "must be a port number from 1 to 65535".to_owned(),
            });
        }
        if m.rtmp
            .hook_secret
            .chars()
            .any(|c| !c.is_ascii_alphanumeric())
        {
            return Err(ConfigError::Invalid {
                key: "media.rtmp.hook_secret",
                problem: "may only contain letters and digits".to_owned(),
            });
        }
        // Each slot is one x264 that takes every core it gets; more than this is a typo (and a
        // huge number would not even make a semaphore).
        if !(1..=64).contains(&m.rtmp.max_reencodes) {
            return Err(ConfigError::Invalid {
                key: "media.rtmp.max_reencodes",
                problem: format!("must be between 1 and 64, got {}", m.rtmp.max_reencodes),
            });
        }
        if !(1..=10).contains(&r.media_attempts) {
            return Err(ConfigError::Invalid {
                key: "rooms.media_attempts",
                problem: format!("must be between 1 and 10, got {}", r.media_attempts),
            });
        }
        if r.max_connections_per_user > 100 {
            return Err(ConfigError::Invalid {
                key: "rooms.max_connections_per_user",
                problem: format!(
                    "must be between 1 and 100, got {}",
                    r.max_connections_per_user
                ),
            });
        }
        if !(1..=1000).contains(&r.viewers_listed) {
            return Err(ConfigError::Invalid {
                key: "rooms.viewers_listed",
                problem: format!("must be between 1 and 1000, got {}", r.viewers_listed),
            });
        }
        if r.idle_close_secs > 24 * 3600 {
            return Err(ConfigError::Invalid {
                key: "rooms.idle_close_secs",
                problem: format!("must be at most 86400 seconds, got {}", r.idle_close_secs),
            });
        }
        if !(256..=1024 * 1024).contains(&r.max_frame_bytes) {
            return Err(ConfigError::Invalid {
                key: "rooms.max_frame_bytes",
                problem: format!("must be between 256 and 1048576, got {}", r.max_frame_bytes),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for gift in &self.gifts {
            let id_ok = !gift.id.is_empty()
                && gift.id.len() <= 32
                && gift
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !id_ok || !seen.insert(gift.id.as_str()) {
                return Err(ConfigError::Invalid {
                    key: "gifts.id",
                    problem: format!(
                        "must be unique, 1 to 32 letters, digits, '_' or '-'; got {:?}",
                        gift.id
                    ),
                });
            }
            if gift.name.trim().is_empty() || gift.name.chars().count() > MAX_GIFT_NAME_CHARS {
                return Err(ConfigError::Invalid {
                    key: "gifts.name",
                    problem: format!(
                        "the gift {:?} needs a name of 1 to {MAX_GIFT_NAME_CHARS} characters",
                        gift.id
                    ),
                });
            }
            for (tag, name) in &gift.names {
                if !crate::i18n::Lang::ALL.iter().any(|l| l.tag() == tag) {
                    let spoken: Vec<_> = crate::i18n::Lang::ALL.iter().map(|l| l.tag()).collect();
                    return Err(ConfigError::Invalid {
                        key: "gifts.names",
                        problem: format!(
                            "the gift {:?} has a name for {tag:?}, not a language the site \
                             speaks ({})",
                            gift.id,
                            spoken.join(", ")
                        ),
                    });
                }
                if name.trim().is_empty() || name.chars().count() > MAX_GIFT_NAME_CHARS {
                    return Err(ConfigError::Invalid {
                        key: "gifts.names",
                        problem: format!(
                            "the gift {:?} needs a {tag} name of 1 to {MAX_GIFT_NAME_CHARS} \
                             characters",
                            gift.id
                        ),
                    });
                }
            }
        }
        if self.email.retry_max_secs < self.email.retry_min_secs {
            return Err(ConfigError::Invalid {
                key: "email.retry_max_secs",
                problem: "must not be smaller than email.retry_min_secs".to_owned(),
            });
        }
        if let Err(e) = self.email.from.parse::<lettre::message::Mailbox>() {
            return Err(ConfigError::Invalid {
                key: "email.from",
                problem: format!("is not an email address ({e}), got {:?}", self.email.from),
            });
        }
        if self.email.transport == MailTransport::Smtp && self.email.smtp.host.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "email.smtp.host",
                problem: "must be set when email.transport is \"smtp\"".to_owned(),
            });
        }
        if !(1024..=MAX_BODY).contains(&self.uploads.max_image_bytes) {
            return Err(ConfigError::Invalid {
                key: "uploads.max_image_bytes",
                problem: format!(
                    "must be between 1024 and {MAX_BODY} bytes, got {}",
                    self.uploads.max_image_bytes
                ),
            });
        }
        if self.uploads.decode_slots > 1024 {
            return Err(ConfigError::Invalid {
                key: "uploads.decode_slots",
                problem: format!(
                    "must be at most 1024 (0 means one per CPU core), got {}",
                    self.uploads.decode_slots
                ),
            });
        }
        if self.uploads.decode_wait_ms > 60_000 {
            return Err(ConfigError::Invalid {
                key: "uploads.decode_wait_ms",
                problem: format!(
                    "must be at most 60000 milliseconds, got {}",
                    self.uploads.decode_wait_ms
                ),
            });
        }
        if !(1024..=MAX_DOWNLOAD_BYTES).contains(&self.downloads.max_bytes) {
            return Err(ConfigError::Invalid {
                key: "downloads.max_bytes",
                problem: format!(
                    "must be between 1024 and {MAX_DOWNLOAD_BYTES} bytes (1 TiB), got {}",
                    self.downloads.max_bytes
                ),
            });
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "storage.data_dir",
                problem: "must not be empty".to_owned(),
            });
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigError::Invalid {
                key: "log.level",
                problem: format!("is not a valid log filter ({e}), got {:?}", self.log.level),
            });
        }
        Ok(())
    }

    /// The effective settings as TOML, as `check-config` prints them.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config is plain data that TOML can always express")
    }
}

/// `http://host[:port]` or `https://…`: what a browser's Content-Security-Policy takes as an
/// origin, with nothing in it that could end the policy's directive or list (`;`, `,`, spaces).
fn is_origin(text: &str) -> bool {
    let Some(rest) = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
    else {
        return false;
    };
    // An IPv6 address is bracketed and has colons of its own; the port follows the bracket.
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some(split) => split,
            None => return false,
        },
        None => rest.split_at(rest.find(':').unwrap_or(rest.len())),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|number| {
            number.bytes().all(|b| b.is_ascii_digit()) && number.parse::<u16>().is_ok()
        });
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_origins_are_plain_origins() {
        for good in [
            "http://192.168.1.20:8090",
            "https://cdn.example.org",
            "http://[::1]:8090",
            "http://media-1.lan",
        ] {
            assert!(is_origin(good), "{good}");
        }
        for bad in [
            "192.168.1.20:8090",
            "ftp://example.org",
            "http://",
            "http://example.org/",
            "http://example.org/hls",
            "http://example.org:port",
            "http://a.org; script-src *",
            "http://a.org,b.org",
            "http://a.org b.org",
            "*",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
        let mut config = Config::default();
        config.media.watch_origins = vec!["http://ok.lan".into(), "evil; x".into()];
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("media.watch_origins"), "{err}");
    }

    #[test]
    fn the_documented_default_file_equals_the_built_in_defaults() {
        assert_eq!(Config::parse(DEFAULT_TOML).unwrap(), Config::default());
    }

    #[test]
    fn an_empty_file_means_all_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn an_unknown_key_is_named() {
        let err = Config::parse("[server]\nlisten_port = 80\n").unwrap_err();
        assert!(err.contains("listen_port"), "{err}");
    }

    #[test]
    fn an_unknown_section_is_named() {
        let err = Config::parse("[sever]\nlisten = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(err.contains("sever"), "{err}");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let err = Config::parse("[server]\nlisten = \"not an address\"\n").unwrap_err();
        assert!(err.contains("listen"), "{err}");
        let err = Config::parse("[server]\nmax_body_bytes = \"big\"\n").unwrap_err();
        assert!(err.contains("max_body_bytes"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let mut config = Config::default();
        config.server.max_body_bytes = 10;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("server.max_body_bytes"), "{err}");
    }

    #[test]
    fn trusted_proxies_take_addresses_and_blocks() {
        let config = Config::parse(
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\", \"::ffff:192.168.1.0/120\"]\n",
        )
        .unwrap();
        let [net, one, mapped] = config.server.trusted_proxies[..] else {
            panic!("three entries: {:?}", config.server.trusted_proxies);
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(net.contains(ip("10.200.3.4")));
        assert!(net.contains(ip("::ffff:10.0.0.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(one.contains(ip("::1")));
        assert!(!one.contains(ip("::2")));
        assert!(mapped.contains(ip("192.168.1.77")));
        assert!(!mapped.contains(ip("192.168.2.1")));
        assert_eq!(String::from(mapped), "192.168.1.0/24");
        assert_eq!(Config::parse(&config.to_toml()).unwrap(), config);
    }

    #[test]
    fn a_bad_trusted_proxy_names_the_key() {
        for bad in ["10.0.0.0/33", "proxy.lan", "10.0.0.1/", "::1/129"] {
            let err =
                Config::parse(&format!("[server]\ntrusted_proxies = [{bad:?}]\n")).unwrap_err();
            assert!(err.contains("trusted_proxies"), "{err}");
            assert!(err.contains("CIDR"), "{err}");
        }
    }

    #[test]
    fn the_websocket_idle_time_must_outlast_a_ping() {
        let mut config = Config::default();
        config.rooms.ws_idle_secs = config.rooms.ws_ping_secs;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("rooms.ws_idle_secs"), "{err}");
        config.rooms.ws_idle_secs = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("rooms.ws_idle_secs"), "{err}");
    }

    #[test]
    fn a_metrics_token_is_empty_or_long_and_plain() {
        let mut config = Config::default();
        for bad in [
            "short",
            "has spaces in it, sixteen+",
            "quote\"inside-the-token",
        ] {
            config.server.metrics_token = bad.to_owned();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("server.metrics_token"), "{err}");
        }
        config.server.metrics_token = "prometheus-0123456789.~_".to_owned();
        config.validate().unwrap();
    }

    #[test]
    fn the_download_cap_is_bounded() {
        let mut config = Config::default();
        for bad in [0, 1023, MAX_DOWNLOAD_BYTES + 1] {
            config.downloads.max_bytes = bad;
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("downloads.max_bytes"), "{err}");
        }
        config.downloads.max_bytes = 5 * 1024 * 1024 * 1024;
        config.validate().unwrap();
    }

    #[test]
    fn upload_decode_settings_are_bounded() {
        let mut config = Config::default();
        config.uploads.decode_slots = 5000;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("uploads.decode_slots"), "{err}");
        config.uploads.decode_slots = 4;
        config.uploads.decode_wait_ms = 600_000;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("uploads.decode_wait_ms"), "{err}");
    }

    #[test]
    fn the_abuse_settings_are_checked_and_named() {
        let mut config = Config::default();
        config.limits.login_backoff_max_secs = 1;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("limits.login_backoff_max_secs"), "{err}");
        let mut config = Config::default();
        config.limits.max_tracked_keys = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("limits.max_tracked_keys"), "{err}");
        let mut config = Config::default();
        config.accounts.login_events_days = u64::MAX;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("accounts.login_events_days"), "{err}");
        let mut config = Config::default();
        config.limits.guest_per_ip = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("limits.guest_per_ip"), "{err}");
    }

    #[test]
    fn overrides_win_over_the_file() {
        let mut config = Config::parse("[server]\nlisten = \"127.0.0.1:9000\"\n").unwrap();
        config.apply(&Overrides {
            listen: Some("127.0.0.1:9100".parse().unwrap()),
            data_dir: Some("/tmp/x".into()),
        });
        assert_eq!(config.server.listen.port(), 9100);
        assert_eq!(config.storage.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn printed_settings_parse_back_to_the_same_config() {
        let config = Config::default();
        assert_eq!(Config::parse(&config.to_toml()).unwrap(), config);
    }
}
