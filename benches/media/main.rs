//! `media-latency`: how long the real media plane takes (see docs/BENCHMARKS.md).
//!
//! Each run starts the real `roommanager serve` binary as a child process on a fresh data dir and
//! free loopback ports, with one media backend (`builtin`: RoomManager's own RTMP listener and
//! one ffmpeg per stream; `rtmp`: managed nginx-rtmp), makes a host and a fan through the HTTP
//! API and the mail outbox, and talks to `/ws` like the browser does. The backends alternate run
//! by run, with the same steps. It measures:
//!
//! - (a) from the host's ffmpeg starting (640x360 test pattern with tone, `-re`, a keyframe every
//!   `--keyframe-secs`) to the first time the HLS playlist lists a segment that ffprobe decodes
//!   (640 wide);
//! - (b) from the host's `answer_connect` (accepting the fan) to the mixed playlist listing a
//!   segment that decodes 1280 wide; the fan starts pushing as soon as it gets `connect_started`;
//! - (c) from `close_room` (after the co-stream ended and both pushes stopped) to the server
//!   logging `recording listed` (stderr lines are timestamped as they arrive);
//! - the CPU and resident memory of the server and of its child processes (nginx, or the
//!   stream's ffmpeg) over [`USAGE_WINDOW`] while the host's one stream plays, before the
//!   co-stream.
//!
//! Build: `cargo build --release --features bench`; run: `target/release/media-latency`.

// Cargo.toml sets `autobenches = false`; should Cargo ever infer a bench target from this path
// (benches/*/main.rs) again, compiled as a test harness the file is empty.
#![cfg(not(test))]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const PASSWORD: &str = "correct horse battery";
/// How long any single step may take before the run fails.
const STEP: Duration = Duration::from_secs(60);
/// How long the CPU of the server and its children is measured while one stream plays.
const USAGE_WINDOW: Duration = Duration::from_secs(10);

/// The media backend of a run (`media.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    Builtin,
    Rtmp,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Builtin => "builtin",
            Backend::Rtmp => "rtmp",
        }
    }
}

/// Media-plane latency of the real RoomManager binary, builtin RTMP ingest against nginx-rtmp.
#[derive(Parser, Debug)]
#[command(name = "media-latency")]
struct Args {
    /// Runs per fragment setting and backend; the table shows each run and the median.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Media backends to measure, comma-separated; their runs alternate.
    #[arg(long, value_delimiter = ',', default_value = "builtin,rtmp")]
    backends: Vec<Backend>,
    /// `media.rtmp.hls_fragment_secs` values to measure, comma-separated (one set of runs each).
    #[arg(long, value_delimiter = ',', default_value = "2")]
    fragment_secs: Vec<u64>,
    /// Keyframe interval of the test pushes, in seconds (at 30 fps: `-g 30 × this`).
    #[arg(long, default_value_t = 1)]
    keyframe_secs: u64,
    /// How often the HLS playlists are polled, in milliseconds.
    #[arg(long, default_value_t = 100)]
    poll_ms: u64,
    /// The RoomManager binary to measure.
    #[arg(long, default_value = "target/release/roommanager")]
    binary: PathBuf,
    /// Keep each run's data dir (config, logs, HLS, recordings) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

/// One run's measurements, all from the run's own clock.
#[derive(Debug, Clone)]
struct RunResult {
    /// (a) ffmpeg start → playable host playlist.
    push_to_playable: Duration,
    /// ffmpeg start → the viewer's `on_air` message (publish authorised by the hook).
    push_to_on_air: Duration,
    /// ffmpeg start → first playlist that lists a segment at all.
    push_to_listed: Duration,
    /// (b) `answer_connect` → playable mixed playlist.
    accept_to_mixed: Duration,
    /// `answer_connect` → the fan's `connect_started` (its push URL).
    accept_to_connect_started: Duration,
    /// Mixer launches (log `mixer started`) between the accept and the playable mix.
    mixer_starts: usize,
    /// `answer_connect` → the launch of the mixer that made the picture.
    accept_to_last_mixer_start: Option<Duration>,
    /// `answer_connect` → nginx accepted the guest's publish (log `publish accepted … guest`).
    accept_to_guest_publish: Option<Duration>,
    /// `answer_connect` → nginx accepted the mixer's publish (log `publish accepted … mix`).
    accept_to_mix_publish: Option<Duration>,
    /// (c) `close_room` → `recording listed` in the log.
    close_to_listed: Duration,
    /// `close_room` → the last `recording ready` (remux done); negative when it came before.
    close_to_remuxed: Option<f64>,
    /// CPU used during the run by processes outside this benchmark's tree (the server, nginx,
    /// ffmpeg and ffprobe are all reaped children), in cores on average: other work on the
    /// machine competing with the measurement.
    others_cores: f64,
    /// The server and its children while the host's stream plays.
    usage: Usage,
}

/// CPU (share of one core) and resident memory (KiB) while one stream plays.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    server_cpu: f64,
    /// nginx (master and worker), or the builtin backend's per-stream ffmpeg.
    children_cpu: f64,
    /// The server before the push, and while it plays.
    server_idle_rss: u64,
    server_rss: u64,
    children_rss: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    if !args.binary.exists() {
        eprintln!(
            "{} not found: build it first with `cargo build --release --features bench`",
            args.binary.display()
        );
        return ExitCode::FAILURE;
    }
    println!("load before: {}", uptime());
    println!(
        "pushes: 640x360 testsrc + 440/880 Hz sine, 30 fps, libx264 ultrafast zerolatency, keyframe every {} s (-g {}), -re; playlists polled every {} ms",
        args.keyframe_secs,
        30 * args.keyframe_secs,
        args.poll_ms
    );
    let mut tables = Vec::new();
    let mut failed = 0;
    for &fragment in &args.fragment_secs {
        let mut results: Vec<(Backend, Vec<RunResult>)> =
            args.backends.iter().map(|b| (*b, Vec::new())).collect();
        for run in 1..=args.runs {
            for (backend, results) in &mut results {
                let backend = *backend;
                let label = backend.name();
                let started = Instant::now();
                let before = CpuTicks::now();
                let outcome = one_run(&args, backend, fragment, run).await;
                let others_cores = CpuTicks::now().others_cores(&before, started.elapsed());
                match outcome {
                    Ok(mut r) => {
                        r.others_cores = others_cores;
                        let u = r.usage;
                        println!(
                        "{label}, hls_fragment {fragment} s, run {run}: (a) {:.2} s  (b) {:.2} s  (c) {:.2} s   [on_air {:.2} s, first listed {:.2} s; connect_started {:.2} s, mixer starts {}, last start {}, guest publish {}, mix publish {}; remux {}; cpu server {:.1} % children {:.1} %, rss server {} → {} KiB children {} KiB] ({:.0} s, others used {:.2} cores)",
                        secs(r.push_to_playable),
                        secs(r.accept_to_mixed),
                        secs(r.close_to_listed),
                        secs(r.push_to_on_air),
                        secs(r.push_to_listed),
                        secs(r.accept_to_connect_started),
                        r.mixer_starts,
                        opt(r.accept_to_last_mixer_start),
                        opt(r.accept_to_guest_publish),
                        opt(r.accept_to_mix_publish),
                        r.close_to_remuxed
                            .map_or("-".to_owned(), |d| format!("{d:+.2} s")),
                        u.server_cpu * 100.0,
                        u.children_cpu * 100.0,
                        u.server_idle_rss,
                        u.server_rss,
                        u.children_rss,
                        secs(started.elapsed()),
                        r.others_cores,
                    );
                        results.push(r);
                    }
                    Err(e) => {
                        failed += 1;
                        println!("{label}, hls_fragment {fragment} s, run {run}: FAILED: {e}");
                    }
                }
            }
        }
        for (backend, results) in &results {
            tables.push(table(*backend, fragment, &args, results));
        }
    }
    println!("load after: {}", uptime());
    for t in tables {
        println!("\n{t}");
    }
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn opt(d: Option<Duration>) -> String {
    d.map_or("-".to_owned(), |d| format!("{:.2} s", secs(d)))
}

/// Busy CPU time of the whole machine and of this process with its reaped children, in ticks.
struct CpuTicks {
    machine_busy: u64,
    mine: u64,
}

impl CpuTicks {
    fn now() -> CpuTicks {
        let machine_busy = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| {
                let fields: Vec<u64> = stat
                    .lines()
                    .next()?
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|f| f.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal …: busy is all but idle and iowait.
                let total: u64 = fields.iter().take(8).sum();
                Some(total - fields.get(3)? - fields.get(4)?)
            })
            .unwrap_or(0);
        let mine = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| {
                // Fields after the ")" that ends the command name: utime is the 12th, then stime,
                // cutime, cstime.
                let rest = &stat[stat.rfind(')')? + 2..];
                let fields: Vec<u64> = rest
                    .split_whitespace()
                    .skip(11)
                    .take(4)
                    .filter_map(|f| f.parse().ok())
                    .collect();
                Some(fields.iter().sum())
            })
            .unwrap_or(0);
        CpuTicks { machine_busy, mine }
    }

    fn others_cores(&self, before: &CpuTicks, wall: Duration) -> f64 {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let busy = self.machine_busy.saturating_sub(before.machine_busy) as f64;
        let mine = self.mine.saturating_sub(before.mine) as f64;
        ((busy - mine).max(0.0) / hz) / wall.as_secs_f64().max(0.001)
    }
}

fn uptime() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| format!("loadavg {}", l.trim()))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// A Markdown table of one backend: one row per run and the median, then its resources.
fn table(backend: Backend, fragment: u64, args: &Args, results: &[RunResult]) -> String {
    let mut out = format!(
        "{}: hls_fragment_secs = {fragment}, keyframe every {} s ({} of {} runs succeeded)\n\n",
        backend.name(),
        args.keyframe_secs,
        results.len(),
        args.runs
    );
    out.push_str("| run | (a) first frame → playable playlist | (b) accept → playable mix | (c) close → recording listed | (a) ffmpeg start → on_air | (b) accept → guest publish | (b) accept → mix publish | other load |\n");
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for (i, r) in results.iter().enumerate() {
        out.push_str(&format!(
            "| {} | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {} | {} | {:.2} cores |\n",
            i + 1,
            secs(r.push_to_playable),
            secs(r.accept_to_mixed),
            secs(r.close_to_listed),
            secs(r.push_to_on_air),
            opt(r.accept_to_guest_publish),
            opt(r.accept_to_mix_publish),
            r.others_cores,
        ));
    }
    let med = |f: fn(&RunResult) -> Option<f64>| {
        median(results.iter().filter_map(f).collect())
            .map_or("-".to_owned(), |m| format!("{m:.2} s"))
    };
    out.push_str(&format!(
        "| **median** | **{}** | **{}** | **{}** | {} | {} | {} | |\n",
        med(|r| Some(secs(r.push_to_playable))),
        med(|r| Some(secs(r.accept_to_mixed))),
        med(|r| Some(secs(r.close_to_listed))),
        med(|r| Some(secs(r.push_to_on_air))),
        med(|r| r.accept_to_guest_publish.map(secs)),
        med(|r| r.accept_to_mix_publish.map(secs)),
    ));
    let usage =
        |f: fn(&Usage) -> f64| median(results.iter().map(|r| f(&r.usage)).collect()).unwrap_or(0.0);
    out.push_str(&format!(
        "\nOne 640x360 stream playing, medians over {:?}: server {:.1} % of a core, its children \
         ({}) {:.1} %; resident: server {:.0} → {:.0} KiB, children {:.0} KiB\n",
        USAGE_WINDOW,
        usage(|u| u.server_cpu) * 100.0,
        match backend {
            Backend::Builtin => "the stream's ffmpeg",
            Backend::Rtmp => "nginx master and worker",
        },
        usage(|u| u.children_cpu) * 100.0,
        usage(|u| u.server_idle_rss as f64),
        usage(|u| u.server_rss as f64),
        usage(|u| u.children_rss as f64),
    ));
    out
}

// ---- one run ----

async fn one_run(
    args: &Args,
    backend: Backend,
    fragment: u64,
    run: usize,
) -> Result<RunResult, String> {
    let server = Server::start(args, backend, fragment, run).await?;
    let result = measure(args, &server).await;
    // Whatever happened, the server (and with it nginx and any mixer) stops here.
    server.stop().await;
    result
}

async fn measure(args: &Args, server: &Server) -> Result<RunResult, String> {
    let http = Http::new();
    let (_, host_token) = account(&http, server, "mhost").await?;
    let (fan_id, fan_token) = account(&http, server, "mfan").await?;

    let mut host = Ws::connect(&server.base, &host_token).await?;
    host.send(json!({"type": "start_live", "title": "Media latency"}))
        .await?;
    let started = host.expect("live_started").await?;
    let room = started["room_id"].as_u64().ok_or("no room_id")?;
    // Watch URLs are paths, resolved against the address the page was opened with.
    let host_watch = format!("{}{}", server.base, str_field(&started, "watch_url")?);
    let push_url = str_field(&started, "push_url")?;

    let mut fan = Ws::connect(&server.base, &fan_token).await?;
    fan.send(json!({"type": "join_room", "room_id": room}))
        .await?;
    fan.expect("room_info").await?;

    let poll = Duration::from_millis(args.poll_ms);
    let server_idle_rss = server.pid().map_or(0, rss_kib);
    let scratch = server.dir.join("bench");
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;

    // (a) The host's picture.
    let pushed_at = Instant::now();
    let mut host_push = push(&push_url, 640, 360, 440, args.keyframe_secs)?;
    let watcher = tokio::spawn(playable(
        http.clone(),
        host_watch.clone(),
        640,
        poll,
        scratch.join("host.ts"),
    ));
    let on_air = fan.expect("on_air").await?;
    let on_air_at = Instant::now();
    if on_air["on_air"] != true {
        return Err(format!("unexpected on_air: {on_air}"));
    }
    let host_playable = watcher.await.map_err(|e| e.to_string())??;
    if let Ok(Some(status)) = host_push.try_wait() {
        return Err(format!("the host's ffmpeg exited: {status}"));
    }
    let usage = Usage {
        server_idle_rss,
        ..usage_while_playing(server).await?
    };

    // (b) Co-streaming: the fan applies, the host accepts, the fan pushes; the mix plays.
    fan.send(json!({"type": "apply_connect"})).await?;
    host.expect("connect_request").await?;
    let accepted_at = Instant::now();
    host.send(json!({"type": "answer_connect", "user_id": fan_id, "accept": true}))
        .await?;
    let connect = fan.expect("connect_started").await?;
    let connect_started_at = Instant::now();
    let guest_push_url = str_field(&connect, "push_url")?;
    let mixed_watch = format!("{}{}", server.base, str_field(&connect, "watch_url")?);
    let mut guest_push = push(&guest_push_url, 640, 360, 880, args.keyframe_secs)?;
    let mixed = playable(
        http.clone(),
        mixed_watch,
        1280,
        poll,
        scratch.join("mix.ts"),
    )
    .await?;
    let mixer_launches = server.lines_between("mixer started", accepted_at, mixed.at);
    let since_accept = |needle: &str| {
        server
            .lines_between(needle, accepted_at, mixed.at)
            .first()
            .map(|&t| t - accepted_at)
    };
    let accept_to_guest_publish = since_accept("kind=\"guest\"");
    let accept_to_mix_publish = since_accept("kind=\"mix\"");

    // End the co-stream, stop both pushes.
    fan.send(json!({"type": "end_connect"})).await?;
    host.expect("connect_ended").await?;
    stop_child(&mut guest_push).await;
    stop_child(&mut host_push).await;

    // (c) Close the room; the recording gets listed.
    let closing_at = Instant::now();
    host.send(json!({"type": "close_room"})).await?;
    let listed_at = server
        .wait_for_line("recording listed", closing_at, STEP)
        .await
        .ok_or_else(|| {
            let warn = server.last_lines(8);
            format!("no `recording listed` within {STEP:?}; last log lines:\n{warn}")
        })?;
    let remuxed = server
        .lines_between("recording ready", pushed_at, listed_at)
        .last()
        .map(|&t| signed_secs(closing_at, t));

    Ok(RunResult {
        push_to_playable: host_playable.at - pushed_at,
        push_to_on_air: on_air_at - pushed_at,
        push_to_listed: host_playable.first_listed - pushed_at,
        accept_to_mixed: mixed.at - accepted_at,
        accept_to_connect_started: connect_started_at - accepted_at,
        mixer_starts: mixer_launches.len(),
        accept_to_last_mixer_start: mixer_launches.last().map(|&t| t - accepted_at),
        accept_to_guest_publish,
        accept_to_mix_publish,
        close_to_listed: listed_at - closing_at,
        close_to_remuxed: remuxed,
        others_cores: 0.0,
        usage,
    })
}

/// The CPU of the server and of its descendants over [`USAGE_WINDOW`], and their resident
/// memory at its end.
async fn usage_while_playing(server: &Server) -> Result<Usage, String> {
    let pid = server.pid().ok_or("the server has no pid")?;
    let children = || descendants(pid);
    let ticks = |pids: &[u32]| pids.iter().map(|p| cpu_ticks(*p)).sum::<u64>();
    let (server_before, children_before) = (cpu_ticks(pid), ticks(&children()));
    tokio::time::sleep(USAGE_WINDOW).await;
    let now = children();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let share = |ticks: u64| ticks as f64 / hz / USAGE_WINDOW.as_secs_f64();
    Ok(Usage {
        server_cpu: share(cpu_ticks(pid).saturating_sub(server_before)),
        children_cpu: share(ticks(&now).saturating_sub(children_before)),
        server_idle_rss: 0,
        server_rss: rss_kib(pid),
        children_rss: now.iter().map(|p| rss_kib(*p)).sum(),
    })
}

/// A process's user + system CPU ticks (0 once it is gone).
fn cpu_ticks(pid: u32) -> u64 {
    stat_fields(pid)
        .map(|f| {
            f.iter()
                .skip(11)
                .take(2)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// The fields of `/proc/PID/stat` after the command name (the state is the first).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Every process below `pid` (children, their children, …).
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|p| Some((p, stat_fields(p)?.get(1)?.parse().ok()?)))
                .collect()
        })
        .unwrap_or_default();
    let mut found = vec![pid];
    let mut at = 0;
    while at < found.len() {
        let parent = found[at];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        at += 1;
    }
    found.remove(0);
    found
}

fn signed_secs(from: Instant, to: Instant) -> f64 {
    if to >= from {
        secs(to - from)
    } else {
        -secs(from - to)
    }
}

fn str_field(v: &Value, name: &str) -> Result<String, String> {
    v[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no {name} in {v}"))
}

// ---- the server under test ----

type Log = Arc<Mutex<Vec<(Instant, String)>>>;

struct Server {
    child: Option<Child>,
    base: String,
    dir: PathBuf,
    keep: bool,
    log: Log,
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

impl Server {
    async fn start(
        args: &Args,
        backend: Backend,
        fragment: u64,
        run: usize,
    ) -> Result<Server, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "media-latency-{}-{}-f{fragment}-r{run}-{nanos}",
            std::process::id(),
            backend.name()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let dir = std::fs::canonicalize(&dir).map_err(|e| e.to_string())?;
        let http_port = free_port()?;
        let rtmp_port = free_port()?;
        let control_port = free_port()?;
        let base = format!("http://127.0.0.1:{http_port}");
        let data = dir.join("data");
        let config = format!(
            r#"[server]
listen = "127.0.0.1:{http_port}"
shutdown_grace_secs = 2

[storage]
data_dir = "{data}"

[limits]
login_free_failures = 100000
login_per_ip = 100000
register_per_ip = 100000
email_per_address = 100000

[email]
transport = "outbox"
retry_min_secs = 1
retry_max_secs = 2

[rooms]
record_delay_secs = 1
chat_per_window = 100000

[media]
backend = "{backend}"

[media.rtmp]
manage_nginx = {nginx}
rtmp_listen = "127.0.0.1:{rtmp_port}"
control_port = {control_port}
hls_fragment_secs = {fragment}
hls_playlist_secs = 10

[media.builtin]
rtmp_listen = "127.0.0.1:{rtmp_port}"

[log]
level = "info"
"#,
            data = data.display(),
            backend = backend.name(),
            nginx = backend == Backend::Rtmp,
        );
        let config_path = dir.join("roommanager.toml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let mut child = Command::new(&args.binary)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .args(["--listen", &format!("127.0.0.1:{http_port}")])
            .arg("--data-dir")
            .arg(&data)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", args.binary.display()))?;
        let log: Log = Arc::default();
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let lines = log.clone();
        let log_file = dir.join("roommanager.log");
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            let mut file = std::fs::File::create(log_file).ok();
            while let Ok(Some(line)) = reader.next_line().await {
                let at = Instant::now();
                if let Some(f) = file.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{line}");
                }
                lines
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((at, line));
            }
        });
        let server = Server {
            child: Some(child),
            base,
            dir,
            keep: args.keep,
            log,
        };
        let begun = Instant::now();
        if server
            .wait_for_line("listening on http://", begun - Duration::from_secs(1), STEP)
            .await
            .is_none()
        {
            let tail = server.last_lines(10);
            server.stop().await;
            return Err(format!("the server did not start:\n{tail}"));
        }
        // nginx is a child of the server (the builtin listener is the server itself): wait
        // until RTMP connections are taken.
        let rtmp: SocketAddr = ([127, 0, 0, 1], rtmp_port).into();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(rtmp).await.is_err() {
            if Instant::now() > deadline {
                let tail = server.last_lines(10);
                server.stop().await;
                return Err(format!("nothing listens for RTMP on {rtmp}:\n{tail}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The arrival time of the first log line containing `needle` that arrived after `after`.
    async fn wait_for_line(&self, needle: &str, after: Instant, wait: Duration) -> Option<Instant> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(at) = self.lines_between(needle, after, Instant::now()).first() {
                return Some(*at);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn lines_between(&self, needle: &str, from: Instant, to: Instant) -> Vec<Instant> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(at, line)| *at >= from && *at <= to && line.contains(needle))
            .map(|(at, _)| *at)
            .collect()
    }

    fn last_lines(&self, n: usize) -> String {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let start = log.len().saturating_sub(n);
        log[start..]
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGTERM, up to 20 s to exit (RoomManager stops nginx and the mixers itself), then SIGKILL.
    async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child_within(&mut child, Duration::from_secs(20)).await;
        }
        leftovers(&self.dir).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Only on an unexpected exit path: ask politely, then kill (kill_on_drop).
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: kill(2) on our own child's pid has no memory effects.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if matches!(child.try_wait(), Ok(Some(_))) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            let _ = child.start_kill();
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            println!("kept {}", self.dir.display());
        }
    }
}

/// Processes still mentioning the run's dir after the server stopped (nginx, a mixer): reported
/// and killed, so one run never disturbs the next.
async fn leftovers(dir: &Path) {
    let needle = dir.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let Ok(out) = std::process::Command::new("ps")
            .args(["-eo", "pid=,args="])
            .output()
        else {
            return;
        };
        let own = std::process::id().to_string();
        let left: Vec<(i32, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| {
                let (pid, args) = l.trim().split_once(' ')?;
                (pid != own).then(|| Some((pid.parse().ok()?, args.to_owned())))?
            })
            .collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for (pid, args) in left {
                println!("left behind after the server stopped, killing {pid}: {args}");
                // SAFETY: kill(2) has no memory effects.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stop_child(child: &mut Child) {
    stop_child_within(child, Duration::from_secs(5)).await;
}

async fn stop_child_within(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

// ---- ffmpeg and ffprobe ----

/// An ffmpeg pushing a `width`x`height` test pattern with a tone at 30 fps in real time (`-re`),
/// for at most 3 minutes (it is stopped long before).
fn push(
    url: &str,
    width: u32,
    height: u32,
    tone_hz: u32,
    keyframe_secs: u64,
) -> Result<Child, String> {
    Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={width}x{height}:rate=30"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency={tone_hz}:sample_rate=44100"))
        .args(["-t", "180"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args(["-g", &(30 * keyframe_secs).to_string()])
        .args([
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-f", "flv",
        ])
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("run ffmpeg: {e}"))
}

/// The first video stream's width in `file`, if ffprobe decodes one.
async fn probe_width(file: &Path) -> Option<u32> {
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args(["-show_entries", "stream=width", "-of", "csv=p=0"])
            .arg(file)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    if !out.status.success() {
        return None;
    }
    // MPEG-TS lists the stream under its program too: the first value is the width.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .trim_end_matches(',')
        .parse()
        .ok()
}

struct Playable {
    /// When the playlist that listed the decodable segment arrived.
    at: Instant,
    /// When a playlist first listed any segment.
    first_listed: Instant,
}

/// Polls `url` every `poll` until it lists a segment that ffprobe decodes `width` wide.
async fn playable(
    http: Http,
    url: String,
    width: u32,
    poll: Duration,
    scratch: PathBuf,
) -> Result<Playable, String> {
    let deadline = Instant::now() + STEP;
    let base = url.rsplit_once('/').ok_or("a playlist URL")?.0.to_owned();
    let mut first_listed = None;
    let mut last = String::new();
    loop {
        let asked = Instant::now();
        if asked > deadline {
            return Err(format!("{url} never became playable; last: {last}"));
        }
        match http.get(&url, None).await {
            Ok((200, body)) => {
                let at = Instant::now();
                let playlist = String::from_utf8_lossy(&body).into_owned();
                if let Some(segment) = playlist.lines().find(|l| l.ends_with(".ts")) {
                    let listed = *first_listed.get_or_insert(at);
                    match http.get(&format!("{base}/{segment}"), None).await {
                        Ok((200, bytes)) => {
                            std::fs::write(&scratch, bytes).map_err(|e| e.to_string())?;
                            match probe_width(&scratch).await {
                                Some(w) if w == width => {
                                    return Ok(Playable {
                                        at,
                                        first_listed: listed,
                                    })
                                }
                                other => last = format!("segment {segment}: width {other:?}"),
                            }
                        }
                        Ok((status, _)) => last = format!("segment {segment}: HTTP {status}"),
                        Err(e) => last = format!("segment {segment}: {e}"),
                    }
                } else {
                    last = "no segment listed".to_owned();
                }
            }
            Ok((status, _)) => last = format!("HTTP {status}"),
            Err(e) => last = e,
        }
        let next = asked + poll;
        tokio::time::sleep_until(next.into()).await;
    }
}

// ---- HTTP (ureq, off the async threads) ----

#[derive(Clone)]
struct Http {
    agent: ureq::Agent,
}

impl Http {
    fn new() -> Http {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(15)))
            .build()
            .new_agent();
        Http { agent }
    }

    async fn get(&self, url: &str, token: Option<&str>) -> Result<(u16, Vec<u8>), String> {
        self.call(url, token, None).await
    }

    async fn post(
        &self,
        url: &str,
        token: Option<&str>,
        body: Value,
    ) -> Result<(u16, Vec<u8>), String> {
        self.call(url, token, Some(body)).await
    }

    async fn call(
        &self,
        url: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Vec<u8>), String> {
        let agent = self.agent.clone();
        let url = url.to_owned();
        let auth = token.map(|t| format!("Bearer {t}"));
        tokio::task::spawn_blocking(move || {
            let answer = match body {
                Some(body) => {
                    let mut req = agent.post(&url);
                    if let Some(auth) = &auth {
                        req = req.header("authorization", auth);
                    }
                    req.send_json(body)
                }
                None => {
                    let mut req = agent.get(&url);
                    if let Some(auth) = &auth {
                        req = req.header("authorization", auth);
                    }
                    req.call()
                }
            };
            let mut res = answer.map_err(|e| format!("{url}: {e}"))?;
            let status = res.status().as_u16();
            let bytes = res
                .body_mut()
                .with_config()
                .limit(64 * 1024 * 1024)
                .read_to_vec()
                .map_err(|e| format!("{url}: {e}"))?;
            Ok((status, bytes))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// Registers `name`, opens the emailed link from the outbox and logs in: (user id, token).
async fn account(http: &Http, server: &Server, name: &str) -> Result<(u64, String), String> {
    let email = format!("{name}@example.com");
    let (status, body) = http
        .post(
            &format!("{}/api/v1/register", server.base),
            None,
            json!({"username": name, "password": PASSWORD, "email": email}),
        )
        .await?;
    let body: Value = serde_json::from_slice(&body).map_err(|e| format!("register: {e}"))?;
    if status != 201 {
        return Err(format!("register {name}: HTTP {status}: {body}"));
    }
    let id = body["user_id"].as_u64().ok_or("no user_id")?;
    let outbox = server.dir.join("data").join("outbox");
    let deadline = Instant::now() + Duration::from_secs(30);
    let link = loop {
        if let Some(link) = verify_link(&outbox, &email) {
            break link;
        }
        if Instant::now() > deadline {
            return Err(format!("no verification mail to {email}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let path = &link[link.find("/verify?").ok_or("a verification link")?..];
    let (status, _) = http.get(&format!("{}{path}", server.base), None).await?;
    if status != 200 {
        return Err(format!("verify {name}: HTTP {status}"));
    }
    let (status, body) = http
        .post(
            &format!("{}/api/v1/login", server.base),
            None,
            json!({"login": name, "password": PASSWORD}),
        )
        .await?;
    let body: Value = serde_json::from_slice(&body).map_err(|e| format!("login: {e}"))?;
    if status != 200 {
        return Err(format!("login {name}: HTTP {status}: {body}"));
    }
    Ok((id, str_field(&body, "token")?))
}

// ---- the outbox: .eml files, bodies in quoted-printable or base64 ----

fn verify_link(outbox: &Path, email: &str) -> Option<String> {
    for entry in std::fs::read_dir(outbox).ok()?.flatten() {
        if entry.path().extension().is_none_or(|x| x != "eml") {
            continue;
        }
        let Ok(raw) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let raw = raw.replace("\r\n", "\n");
        let (head, _) = raw.split_once("\n\n").unwrap_or((&raw, ""));
        if !head.to_lowercase().contains(&email.to_lowercase()) {
            continue;
        }
        let mut texts = Vec::new();
        text_parts(&raw, &mut texts);
        for text in texts {
            let found = text
                .split_whitespace()
                .map(|w| w.trim_matches(|c: char| matches!(c, '<' | '>' | '"' | '\'' | '(' | ')')))
                .find(|w| w.starts_with("http") && w.contains("/verify?token="));
            if let Some(link) = found {
                return Some(link.to_owned());
            }
        }
    }
    None
}

/// The decoded text parts of a MIME message (multipart, quoted-printable, base64, 7/8 bit).
fn text_parts(raw: &str, out: &mut Vec<String>) {
    let (head, body) = raw.split_once("\n\n").unwrap_or((raw, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_lowercase(), value.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let content_type = header("content-type").unwrap_or_else(|| "text/plain".to_owned());
    if content_type.to_lowercase().starts_with("multipart/") {
        let Some(boundary) = content_type.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("boundary")
                .then(|| v.trim().trim_matches('"').to_owned())
        }) else {
            return;
        };
        let delimiter = format!("--{boundary}");
        for part in body.split(delimiter.as_str()).skip(1) {
            if part.starts_with("--") {
                break;
            }
            text_parts(part.strip_prefix('\n').unwrap_or(part), out);
        }
    } else if content_type.to_lowercase().starts_with("text/") {
        let encoding = header("content-transfer-encoding")
            .unwrap_or_default()
            .to_lowercase();
        let decoded = match encoding.trim() {
            "quoted-printable" => quoted_printable(body),
            "base64" => base64(body),
            _ => body.as_bytes().to_vec(),
        };
        out.push(String::from_utf8_lossy(&decoded).into_owned());
    }
}

fn quoted_printable(body: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in body.split('\n') {
        let (line, soft) = match line.strip_suffix('=') {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' && i + 2 < bytes.len() + 1 {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(b) = hex {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        if !soft {
            out.push(b'\n');
        }
    }
    out
}

fn base64(body: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in body.bytes() {
        let Some(v) = ALPHABET.iter().position(|&a| a == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

// ---- WebSocket ----

struct Ws {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pending: std::collections::VecDeque<Value>,
}

impl Ws {
    async fn connect(base: &str, token: &str) -> Result<Ws, String> {
        let url = format!("{}/ws", base.replacen("http://", "ws://", 1));
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .map_err(|_| "a header value")?,
        );
        let (socket, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| "WebSocket handshake timed out")?
            .map_err(|e| format!("WebSocket handshake: {e}"))?;
        Ok(Ws {
            socket,
            pending: Default::default(),
        })
    }

    async fn send(&mut self, message: Value) -> Result<(), String> {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .map_err(|e| format!("WebSocket send: {e}"))
    }

    /// The next message of `kind` (others are skipped); an `error` message fails the run.
    async fn expect(&mut self, kind: &str) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            while let Some(message) = self.pending.pop_front() {
                if message["type"] == kind {
                    return Ok(message);
                }
                if message["type"] == "error" {
                    return Err(format!("waiting for {kind}: {message}"));
                }
            }
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .map_err(|_| format!("no {kind} within {STEP:?}"))?
                .ok_or_else(|| format!("connection closed while waiting for {kind}"))?
                .map_err(|e| format!("WebSocket: {e}"))?;
            match frame {
                Message::Text(text) => match serde_json::from_str(&text) {
                    Ok(Value::Array(items)) => self.pending.extend(items),
                    Ok(one) => self.pending.push_back(one),
                    Err(e) => return Err(format!("not JSON ({e}): {text}")),
                },
                Message::Close(frame) => {
                    return Err(format!("closed while waiting for {kind}: {frame:?}"))
                }
                _ => {}
            }
        }
    }
}
