//! `fanout`: the fan-out benchmark's load generator (see docs/BENCHMARKS.md).
//!
//! One room, N viewers, one publisher sending danmaku at a fixed offered rate. Every danmaku
//! carries its send time ("t=<ns since this process started>"); `--latency-viewers` of the
//! viewers (spread over the connection order) turn each arrival into a latency sample, the rest
//! only count messages and bytes.
//! Each step offers a rate for a warm-up, then for the measured window, then waits for the
//! window's danmaku to drain; it reports deliveries/s, completeness, p50/p99 latency, the
//! server's CPU µs per delivery and KiB per connection, and this client's own CPU.
//!
//! The server runs as its own process on its own core: by default this program starts itself
//! again in `--serve` mode (the real RoomManager app with the scripted media plane) under
//! `taskset -c 0`, and runs the clients under `taskset -c 1`. `--peer spawn` does the same for
//! the Node `ws` broadcast server in benches/peer/, to compare with.
//!
//! `--floor` measures no server: the kernel's cost of one send per viewer (floor.rs).
//!
//! Build: `cargo build --release --features bench --bin fanout`.

// Compiled as a test harness (`cargo test --features bench`, or a bench target should
// `autobenches` be turned back on) the file is empty: it has no tests of its own.
#![cfg(not(test))]

mod audience;
mod epoll;
mod floor;
mod hosts;
mod probe;
mod serve;
mod svg;
mod sweep;
mod wire;

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use clap::Parser;
use memchr::memmem::Finder;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Semaphore;

/// The fan-out benchmark: one room, N viewers, one publisher at a fixed offered rate.
#[derive(Parser, Debug)]
#[command(name = "fanout")]
struct Args {
    /// Viewers in the room (for the peer: clients that only receive).
    #[arg(long, default_value_t = 1000)]
    viewers: usize,
    /// The first step's offered deliveries per second (danmaku/s × viewers); each next step
    /// doubles it.
    #[arg(long, default_value_t = 25_000.0)]
    start_rate: f64,
    /// Offered deliveries per second for each step, comma-separated, instead of doubling.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// At most this many steps.
    #[arg(long, default_value_t = 8)]
    max_steps: usize,
    /// Seconds each step sends before its measured window.
    #[arg(long, default_value_t = 3)]
    warmup_secs: u64,
    /// Length of each step's measured window, in seconds.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// How many viewers measure latency; the rest only count. They are spread evenly over the
    /// connection order (every N/k-th viewer), so a server that fans out in connection order
    /// (the Node peer) is not measured on its first clients only.
    #[arg(long, default_value_t = 100)]
    latency_viewers: usize,
    /// The sweep stops after a step whose p99 latency is above this.
    #[arg(long, default_value_t = 250.0)]
    p99_limit_ms: f64,
    /// Benchmark the Node peer instead: "spawn" starts benches/peer/server.js (pinned like the
    /// server), or the http:// or ws:// address of a running one.
    #[arg(long, value_name = "spawn|URL")]
    peer: Option<String>,
    /// Benchmark RoomManager and the Node peer (spawned) in one invocation: both get their
    /// viewers, then every step runs on one and then the other (their order alternating), and
    /// the end prints the ratios of their knees, µs/delivery and KiB/connection.
    #[arg(long, conflicts_with_all = ["peer", "url"])]
    compare: bool,
    /// Use a RoomManager that is already running (e.g. `fanout --serve`) instead of starting
    /// one; --data-dir must then be its data dir (the verification mails are read there).
    #[arg(long)]
    url: Option<String>,
    /// The started server's data dir (default: a fresh one under the temp dir, removed after).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// With --url or --peer URL: the server's process id, for its CPU and memory readings.
    #[arg(long)]
    server_pid: Option<u32>,
    /// CPU list for the server started by this program (taskset -c).
    #[arg(long, default_value = "0")]
    server_cpu: String,
    /// CPU list for this program (it re-executes itself under taskset -c).
    #[arg(long, default_value = "1")]
    client_cpu: String,
    /// Do not pin anything to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Run in a session of its own whose scheduling group gets nice -20 (needs root): with the
    /// kernel's autogroup scheduling, plain `nice` does not win CPU time from other sessions.
    #[arg(long)]
    boost: bool,
    /// The server's rooms.client_queue (default: its config's, 256).
    #[arg(long)]
    client_queue: Option<usize>,
    /// Config file for the started server (default: ./roommanager.toml or the defaults).
    #[arg(long)]
    server_config: Option<PathBuf>,
    /// Viewer connections being set up at once.
    #[arg(long, default_value_t = 200)]
    connect_parallel: usize,
    /// Distinct guest accounts for the viewers (0: one per viewer); viewers share them round-robin.
    #[arg(long, default_value_t = 0)]
    guests: usize,
    /// Append one JSON line per step (and one per run) to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run the RoomManager server for the benchmark (what this program starts as its child).
    #[arg(long)]
    serve: bool,
    /// With --serve: address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// How cost grows: for each of --sweep-viewers (one room) and then --many-rooms, start each
    /// server afresh (RoomManager and the Node peer, their order alternating), connect the
    /// viewers and run one step at --per-viewer-rate; print a table and draw --charts.
    #[arg(long, conflicts_with_all = ["peer", "url", "compare", "data_dir"])]
    sweep: bool,
    /// With --sweep: the room sizes, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,1000,5000,10000,15000"
    )]
    sweep_viewers: Vec<usize>,
    /// With --sweep: deliveries per second to each viewer (danmaku/s in its room), so a step
    /// offers this × viewers.
    #[arg(long, default_value_t = 25.0)]
    per_viewer_rate: f64,
    /// With --sweep: the many-rooms case as ROOMSxVIEWERS (each room's host chats in it;
    /// "0x0" leaves it out).
    #[arg(long, default_value = "500x20", value_parser = sweep::parse_rooms)]
    many_rooms: (usize, usize),
    /// With --sweep: write the charts (SVG) into this folder.
    #[arg(long)]
    charts: Option<PathBuf>,
    /// Start RoomManager (as for a benchmark) with this many rooms live, each with its host
    /// connected, print `ready: http://ADDR` and hold them until standard input closes (the
    /// HTTP benchmark, benches/http/run.sh).
    #[arg(long, value_name = "ROOMS", conflicts_with_all = ["peer", "url", "compare", "sweep"])]
    hold_rooms: Option<usize>,
    /// The kernel's floor instead of a server: --viewers loopback connections, one thread
    /// writing the same danmaku frame to each (one writev per viewer) at --start-rate writes/s
    /// and then as fast as it can, without and with TCP_NODELAY, for --secs each; prints the
    /// writer thread's CPU µs per write.
    #[arg(long, conflicts_with_all = ["peer", "url", "compare", "sweep", "hold_rooms"])]
    floor: bool,
    /// The reading side of --floor (what it starts as its child): connect --viewers sockets to
    /// --listen and drain them.
    #[arg(long, hide = true)]
    floor_readers: bool,
}

const PASSWORD: &str = "fan-out-bench-password";
/// How long all viewers may take to connect and join.
const JOIN_LIMIT: Duration = Duration::from_secs(300);
/// How long a step waits after its window for the window's danmaku to arrive.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);

fn main() -> ExitCode {
    let args = Args::parse();
    if args.floor_readers {
        return floor::readers(args.listen, args.viewers);
    }
    if args.serve {
        return serve::main(serve::ServeOptions {
            listen: args.listen,
            data_dir: args
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("./fanout-data")),
            config: args.server_config.clone(),
            client_queue: args.client_queue,
        });
    }
    if (!args.no_pin || args.boost) && std::env::var_os("FANOUT_PINNED").is_none() {
        // Run the clients on their own core (the same program again, under taskset), in a
        // session of their own with --boost (`setsid -w` waits and passes the exit status on).
        let exe = std::env::current_exe().expect("the program's own path");
        let mut command = Command::new(if args.boost { "setsid" } else { "taskset" });
        if args.boost {
            command.arg("-w");
            if !args.no_pin {
                command.arg("taskset");
            }
        }
        if !args.no_pin {
            command.arg("-c").arg(&args.client_cpu);
        }
        let error = command
            .arg(exe)
            .args(std::env::args_os().skip(1))
            .env("FANOUT_PINNED", "1")
            .exec();
        eprintln!("error: cannot run under taskset/setsid: {error}");
        return ExitCode::FAILURE;
    }
    if args.boost {
        // The new session's autogroup; the server started later inherits it.
        if let Err(e) = fs::write("/proc/self/autogroup", "-20") {
            eprintln!("warning: cannot raise the scheduling group's priority: {e}");
        }
    }
    if args.floor {
        return floor::main(&args);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---- what every connection reports ----

/// Nanoseconds since this process's epoch: the clock of the timestamps in the danmaku.
fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Counters shared by every connection task (all on this one thread; atomics for `Sync`).
#[derive(Default)]
struct Counters {
    joined: AtomicUsize,
    failed: AtomicUsize,
    /// Viewers whose connection ended (closed by the server, or an error).
    ended: AtomicUsize,
    /// Danmaku received by viewers, any step.
    danmaku: AtomicU64,
    /// Bytes of WebSocket payload received by viewers.
    bytes: AtomicU64,
    /// Text frames received by viewers (a merged tick's array is one frame).
    frames: AtomicU64,
    /// Danmaku of the step being measured (tag `measuring`) received by viewers.
    measured: AtomicU64,
    /// The tag of the danmaku sent in the measured window; 0 while not measuring.
    measuring: AtomicU8,
    latencies_us: Mutex<Vec<u32>>,
    /// `error` messages the publisher got (rate limits, …) and the last one's text.
    publisher_errors: AtomicU64,
    last_error: Mutex<String>,
    publisher_gone: AtomicBool,
    close_reasons: Mutex<Vec<String>>,
    first_failure: Mutex<String>,
}

const DANMAKU_PREFIX: &[u8] = b"{\"type\":\"danmaku\"";
const TEXT_FIELD: &[u8] = b"\"text\":\"";
/// Where each danmaku in a frame starts. A `"` inside a JSON string is escaped, so the prefix
/// cannot occur inside one: every match is a danmaku message, alone or an element of a merged
/// tick's array (the server's nested objects, like `room_info`'s recent danmaku, carry no
/// `type`).
static DANMAKU: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(DANMAKU_PREFIX));
static TEXT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(TEXT_FIELD));

impl Counters {
    /// Counts the danmaku in one text frame a viewer received (an object or a merged tick's
    /// array), without parsing it: each is found by its prefix and its tag read in place.
    fn viewer_frame(&self, payload: &[u8], latency: bool) {
        self.bytes.fetch_add(payload.len() as u64, Relaxed);
        self.frames.fetch_add(1, Relaxed);
        let measuring = self.measuring.load(Relaxed);
        let (mut danmaku, mut measured) = (0, 0);
        let mut rest = payload;
        while let Some(at) = DANMAKU.find(rest) {
            rest = &rest[at + DANMAKU_PREFIX.len()..];
            danmaku += 1;
            let Some(at) = TEXT.find(rest) else {
                continue;
            };
            rest = &rest[at + TEXT_FIELD.len()..];
            if measuring == 0 || rest.first() != Some(&measuring) {
                continue;
            }
            measured += 1;
            if latency {
                // "<tag> t=<ns> …"
                let sent: u64 = rest
                    .iter()
                    .skip(4)
                    .take_while(|b| b.is_ascii_digit())
                    .fold(0, |n, b| n * 10 + u64::from(b - b'0'));
                let micros = now_ns().saturating_sub(sent) / 1000;
                self.latencies_us
                    .lock()
                    .expect("latency samples")
                    .push(micros.min(u64::from(u32::MAX)) as u32);
            }
        }
        self.danmaku.fetch_add(danmaku, Relaxed);
        if measured > 0 {
            self.measured.fetch_add(measured, Relaxed);
        }
    }

    fn viewer_ended(&self, reason: String) {
        self.ended.fetch_add(1, Relaxed);
        let mut reasons = self.close_reasons.lock().expect("close reasons");
        if reasons.len() < 5 {
            reasons.push(reason);
        }
    }
}

/// A viewer: connects and joins the room (RoomManager), then hands its socket to `audience`,
/// which reads it from then on.
async fn viewer(
    addr: SocketAddr,
    token: Option<String>,
    room: Option<u64>,
    latency: bool,
    counters: Arc<Counters>,
    gate: Arc<Semaphore>,
    audience: Arc<audience::Audience>,
) {
    let permit = gate.acquire_owned().await.expect("the gate stays open");
    let connected = wire::connect(addr, token.as_deref()).await;
    let (mut stream, mut frames) = match connected {
        Ok(pair) => pair,
        Err(e) => {
            counters.failed.fetch_add(1, Relaxed);
            let mut first = counters.first_failure.lock().expect("failure text");
            if first.is_empty() {
                *first = e.to_string();
            }
            return;
        }
    };
    let mut permit = Some(permit);
    match room {
        Some(room) => {
            let join = json!({"type": "join_room", "room_id": room}).to_string();
            if wire::send_text(&mut stream, &join).await.is_err() {
                counters.failed.fetch_add(1, Relaxed);
                return;
            }
        }
        None => {
            counters.joined.fetch_add(1, Relaxed);
            permit = None;
        }
    }
    loop {
        loop {
            let frame = match frames.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return counters.viewer_ended(e.to_string()),
            };
            let payload = frames.bytes(frame.payload);
            match frame.opcode {
                wire::OP_TEXT if frame.fin => {
                    let room_info =
                        wire::messages(payload).any(|m| m.starts_with(b"{\"type\":\"room_info\""));
                    if permit.is_some() && room_info {
                        counters.joined.fetch_add(1, Relaxed);
                        permit = None;
                    }
                    counters.viewer_frame(payload, latency);
                }
                wire::OP_CLOSE => {
                    return counters.viewer_ended(format!(
                        "closed by the server: {}",
                        String::from_utf8_lossy(payload.get(2..).unwrap_or_default())
                    ))
                }
                _ => {}
            }
        }
        if permit.is_none() {
            break;
        }
        match frames.fill(&mut stream).await {
            Ok(0) => return counters.viewer_ended("connection ended".to_owned()),
            Ok(_) => {}
            Err(e) => return counters.viewer_ended(e.to_string()),
        }
    }
    let handed = stream
        .into_std()
        .and_then(|socket| audience.add(socket, frames.into_pending(), latency));
    if let Err(e) = handed {
        counters.viewer_ended(format!("cannot watch the socket: {e}"));
    }
}

/// Reads and discards what the host or the publisher receives (a member that stops reading
/// would be dropped as too slow), noting `error` messages and the end of the connection.
async fn drain<R: tokio::io::AsyncRead + Unpin>(
    mut io: R,
    mut frames: wire::FrameBuffer,
    counters: Arc<Counters>,
) {
    loop {
        while let Ok(Some(frame)) = frames.next_frame() {
            if frame.opcode == wire::OP_CLOSE {
                counters.publisher_gone.store(true, Relaxed);
                return;
            }
            for message in wire::messages(frames.bytes(frame.payload)) {
                if message.starts_with(b"{\"type\":\"error\"") {
                    counters.publisher_errors.fetch_add(1, Relaxed);
                    *counters.last_error.lock().expect("error text") =
                        String::from_utf8_lossy(message).into_owned();
                }
            }
        }
        match frames.fill(&mut io).await {
            Ok(n) if n > 0 => {}
            _ => {
                counters.publisher_gone.store(true, Relaxed);
                return;
            }
        }
    }
}

// ---- the publisher ----

struct Publisher {
    write: OwnedWriteHalf,
    /// RoomManager gets `{"type":"danmaku","text":…}` and sends viewers its own JSON; the peer
    /// relays verbatim, so it gets a message shaped like RoomManager's outgoing one.
    peer: bool,
    seq: u64,
    out: Vec<u8>,
    mask: u32,
}

impl Publisher {
    fn push(&mut self, tag: u8) {
        self.seq += 1;
        let text = format!(
            "{} t={} s={} fan-out benchmark danmaku",
            tag as char,
            now_ns(),
            self.seq
        );
        // Written out by hand: the field order matters to the viewers (`json!` sorts keys).
        let message = if self.peer {
            format!(
                "{{\"type\":\"danmaku\",\"user_id\":2,\"nickname\":\"fanpub\",\"text\":\"{text}\",\"offset_ms\":{}}}",
                1_000_000 + self.seq
            )
        } else {
            format!("{{\"type\":\"danmaku\",\"text\":\"{text}\"}}")
        };
        // xorshift: a different mask for each frame, as the protocol asks of clients.
        self.mask ^= self.mask << 13;
        self.mask ^= self.mask >> 17;
        self.mask ^= self.mask << 5;
        wire::client_frame(
            &mut self.out,
            wire::OP_TEXT,
            message.as_bytes(),
            self.mask.to_be_bytes(),
        );
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.write.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }
}

/// Each publisher sends `per_sec` danmaku a second (into its own room) for `length`, tagged
/// `tag`; returns how many they sent in all, and the write error that ended it early, if one did.
/// Paced by a 1 ms tick: each tick sends what is due by then, in one write per publisher.
async fn offer(
    publishers: &mut [Publisher],
    per_sec: f64,
    length: Duration,
    tag: u8,
) -> (u64, Option<std::io::Error>) {
    let start = tokio::time::Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut each = 0u64;
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        if elapsed >= length {
            return (sent, None);
        }
        let due = (elapsed.as_secs_f64() * per_sec) as u64 + 1;
        for publisher in publishers.iter_mut() {
            for _ in each..due {
                publisher.push(tag);
            }
            if let Err(e) = publisher.flush().await {
                return (sent, Some(e));
            }
            sent += due.saturating_sub(each);
        }
        each = each.max(due);
    }
}

// ---- the server under test ----

struct Target {
    name: &'static str,
    addr: SocketAddr,
    pid: Option<u32>,
    child: Option<Child>,
    /// The data dir, for reading verification mails (RoomManager only).
    data_dir: Option<PathBuf>,
    /// A data dir this program made and removes at the end.
    owned_dir: Option<PathBuf>,
    log: Option<PathBuf>,
}

impl Target {
    fn pid_text(&self) -> Option<String> {
        self.pid.map(|p| p.to_string())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // RoomManager stops gracefully when its stdin closes; the Node peer is killed.
            drop(child.stdin.take());
            if self.name != "RoomManager" {
                let _ = child.kill();
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        if let Some(dir) = self.owned_dir.take() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Only addresses on this machine are benchmark targets.
fn loopback_addr(url: &str) -> Result<SocketAddr, String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host_port = rest.split('/').next().unwrap_or(rest);
    let host_port = host_port.replace("localhost", "127.0.0.1");
    let addr: SocketAddr = host_port
        .parse()
        .map_err(|_| format!("{url:?} is not an address like http://127.0.0.1:8080"))?;
    let loopback = match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip.is_loopback(),
    };
    if !loopback {
        return Err(format!(
            "{url}: the benchmark only talks to 127.0.0.1 or [::1]"
        ));
    }
    Ok(addr)
}

/// Starts `program args` (pinned to `cpu`) and waits for its "listening on http://ADDR" line.
fn spawn_server(
    program: &Path,
    args: &[String],
    cwd: Option<&Path>,
    cpu: Option<&str>,
    log: &Path,
) -> Result<(Child, SocketAddr), String> {
    let mut command = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu).arg(program);
            c
        }
        None => Command::new(program),
    };
    command.args(args).env_remove("FANOUT_PINNED");
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let log_file = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if let Some(url) = line.split("listening on ").nth(1) {
                    return Ok((child, loopback_addr(url.trim())?));
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "{} exited ({status}); see {}",
                        program.display(),
                        log.display()
                    ));
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    Err(format!(
        "{} did not say where it listens; see {}",
        program.display(),
        log.display()
    ))
}

/// The server to benchmark: the Node peer when `peer` names one ("spawn" or its address), else
/// RoomManager (started here, or at `--url`). A RoomManager started here gets `seed_hosts` host
/// accounts with known sessions (`hosts::seed`).
fn start_target(
    args: &Args,
    peer: Option<&str>,
    run_id: &str,
    seed_hosts: usize,
) -> Result<Target, String> {
    let name = if peer.is_some() { "peer" } else { "server" };
    let log = std::env::temp_dir().join(format!("fanout-{run_id}-{name}.log"));
    let cpu = (!args.no_pin).then_some(args.server_cpu.as_str());
    if let Some(peer) = peer {
        if peer != "spawn" {
            return Ok(Target {
                name: "Node ws",
                addr: loopback_addr(peer)?,
                pid: args.server_pid,
                child: None,
                data_dir: None,
                owned_dir: None,
                log: None,
            });
        }
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer");
        if !folder.join("node_modules/ws").is_dir() {
            return Err(format!(
                "the peer needs its npm package: run `npm install` in {}",
                folder.display()
            ));
        }
        let (child, addr) = spawn_server(
            Path::new("node"),
            &["server.js".to_owned(), "0".to_owned()],
            Some(&folder),
            cpu,
            &log,
        )?;
        return Ok(Target {
            name: "Node ws",
            addr,
            pid: Some(child.id()),
            child: Some(child),
            data_dir: None,
            owned_dir: None,
            log: Some(log),
        });
    }
    if let Some(url) = &args.url {
        if seed_hosts > 0 {
            return Err("many rooms need a server started here (no --url)".into());
        }
        let Some(dir) = &args.data_dir else {
            return Err("--url needs --data-dir (the server's, for the verification mails)".into());
        };
        return Ok(Target {
            name: "RoomManager",
            addr: loopback_addr(url)?,
            pid: args.server_pid,
            child: None,
            data_dir: Some(dir.clone()),
            owned_dir: None,
            log: None,
        });
    }
    let (dir, owned) = match &args.data_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = std::env::temp_dir().join(format!("fanout-{run_id}-data"));
            (dir.clone(), Some(dir))
        }
    };
    if seed_hosts > 0 {
        hosts::seed(&dir, seed_hosts)?;
    }
    let mut serve_args = vec![
        "--serve".to_owned(),
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--data-dir".to_owned(),
        dir.display().to_string(),
    ];
    if let Some(queue) = args.client_queue {
        serve_args.extend(["--client-queue".to_owned(), queue.to_string()]);
    }
    if let Some(config) = &args.server_config {
        serve_args.extend(["--server-config".to_owned(), config.display().to_string()]);
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let (child, addr) = spawn_server(&exe, &serve_args, None, cpu, &log)?;
    Ok(Target {
        name: "RoomManager",
        addr,
        pid: Some(child.id()),
        child: Some(child),
        data_dir: Some(dir),
        owned_dir: owned,
        log: Some(log),
    })
}

// ---- accounts and the room (RoomManager only) ----

/// The verification token in a mail to `email` in the outbox, if it is there yet.
fn verification_token(data_dir: &Path, email: &str) -> Option<String> {
    let entries = fs::read_dir(data_dir.join("outbox")).ok()?;
    for entry in entries.flatten() {
        let Ok(raw) = fs::read_to_string(entry.path()) else {
            continue;
        };
        if !raw.contains(email) {
            continue;
        }
        // The body may be 7-bit, quoted-printable or base64.
        let unfolded = raw
            .replace("=\r\n", "")
            .replace("=\n", "")
            .replace("=3D", "=");
        let mut candidates = vec![raw.clone(), unfolded];
        candidates.extend(
            raw.replace("\r\n", "\n")
                .split("\n\n")
                .map(|part| String::from_utf8_lossy(&wire::base64_decode(part)).into_owned()),
        );
        for text in candidates {
            if let Some(at) = text.find("verify?token=") {
                let token: String = text[at + "verify?token=".len()..]
                    .chars()
                    .take_while(char::is_ascii_hexdigit)
                    .collect();
                if token.len() == 64 {
                    return Some(token);
                }
            }
        }
    }
    None
}

fn expect_status(
    what: &str,
    answer: std::io::Result<(u16, String)>,
    want: u16,
) -> Result<String, String> {
    match answer {
        Ok((status, body)) if status == want => Ok(body),
        Ok((status, body)) => Err(format!("{what}: HTTP {status}: {body:.300}")),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// Registers `name`, clicks the emailed link and logs in; returns the session token.
async fn account(addr: SocketAddr, data_dir: &Path, name: &str) -> Result<String, String> {
    let email = format!("{name}@example.com");
    let body = json!({"username": name, "password": PASSWORD, "email": email}).to_string();
    let answer = wire::http(addr, "POST", "/api/v1/register", Some(&body), None).await;
    expect_status("register", answer, 201)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let token = loop {
        if let Some(token) = verification_token(data_dir, &email) {
            break token;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no verification mail to {email} in {}/outbox",
                data_dir.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let path = format!("/verify?token={token}");
    expect_status(
        "verify",
        wire::http(addr, "GET", &path, None, None).await,
        200,
    )?;
    let body = json!({"login": name, "password": PASSWORD}).to_string();
    let answer = wire::http(addr, "POST", "/api/v1/login", Some(&body), None).await;
    let reply = expect_status("login", answer, 200)?;
    token_of(&reply)
}

fn token_of(reply: &str) -> Result<String, String> {
    serde_json::from_str::<Value>(reply)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_owned))
        .ok_or_else(|| format!("no token in {reply:.200}"))
}

/// Reads messages until one of type `kind` arrives; returns it.
async fn expect_message(
    stream: &mut tokio::net::TcpStream,
    frames: &mut wire::FrameBuffer,
    kind: &str,
) -> Result<Value, String> {
    let wait = async {
        loop {
            while let Some(frame) = frames.next_frame().map_err(|e| e.to_string())? {
                if frame.opcode != wire::OP_TEXT {
                    continue;
                }
                for message in wire::messages(frames.bytes(frame.payload)) {
                    let message: Value = serde_json::from_slice(message).unwrap_or(Value::Null);
                    if message["type"] == kind {
                        return Ok(message);
                    }
                    if message["type"] == "error" {
                        return Err(format!("waiting for {kind}, got {message}"));
                    }
                }
            }
            if frames.fill(stream).await.map_err(|e| e.to_string())? == 0 {
                return Err(format!("the connection closed while waiting for {kind}"));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .map_err(|_| format!("no {kind} within 60 s"))?
}

/// Host live, publisher in the room: returns (room id, publisher's socket and frames).
async fn set_up_room(
    target: &Target,
    counters: &Arc<Counters>,
) -> Result<(Option<u64>, tokio::net::TcpStream, wire::FrameBuffer), String> {
    let addr = target.addr;
    let Some(data_dir) = &target.data_dir else {
        // The peer: the publisher is one more plain client.
        let (stream, frames) = wire::connect(addr, None).await.map_err(|e| e.to_string())?;
        return Ok((None, stream, frames));
    };
    let host_token = account(addr, data_dir, "fanhost").await?;
    let publisher_token = account(addr, data_dir, "fanpub").await?;
    let (mut host, mut host_frames) = wire::connect(addr, Some(&host_token))
        .await
        .map_err(|e| format!("host: {e}"))?;
    let start = json!({"type": "start_live", "title": "fan-out benchmark"}).to_string();
    wire::send_text(&mut host, &start)
        .await
        .map_err(|e| e.to_string())?;
    let started = expect_message(&mut host, &mut host_frames, "live_started").await?;
    let room = started["room_id"]
        .as_u64()
        .ok_or_else(|| format!("no room id in {started}"))?;
    tokio::spawn(drain(host, host_frames, counters.clone()));
    let (mut publisher, mut frames) = wire::connect(addr, Some(&publisher_token))
        .await
        .map_err(|e| format!("publisher: {e}"))?;
    let join = json!({"type": "join_room", "room_id": room}).to_string();
    wire::send_text(&mut publisher, &join)
        .await
        .map_err(|e| e.to_string())?;
    expect_message(&mut publisher, &mut frames, "room_info").await?;
    Ok((Some(room), publisher, frames))
}

/// Session tokens for the viewers: `count` guests, made `parallel` at a time.
async fn guest_tokens(addr: SocketAddr, count: usize) -> Result<Vec<String>, String> {
    let gate = Arc::new(Semaphore::new(16));
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("the gate stays open");
            let answer = wire::http(addr, "POST", "/api/v1/guest", Some("{}"), None).await;
            token_of(&expect_status("guest", answer, 201)?)
        }));
    }
    let mut tokens = Vec::with_capacity(count);
    for task in tasks {
        tokens.push(task.await.map_err(|e| e.to_string())??);
    }
    Ok(tokens)
}

// ---- steps ----

struct Step {
    offered: f64,
    danmaku_per_sec: f64,
    sent: u64,
    deliveries_per_sec: f64,
    completeness: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    samples: usize,
    server_cpu_pct: Option<f64>,
    server_us_per_delivery: Option<f64>,
    client_cpu_pct: f64,
    other_cpu_pct: Option<f64>,
    bytes_per_delivery: f64,
    /// Text frames the viewers received per second in the window.
    frames_per_sec: f64,
    viewers_lost: usize,
    publisher_errors: u64,
    loadavg: String,
    /// Set when the client's counts disagree with what was sent (a counting bug, not a
    /// server's fault): more danmaku counted than sent × viewers, or latency samples other
    /// than sent × sampling viewers.
    count_mismatch: Option<String>,
    valid: bool,
}

fn percentile(sorted: &[u32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0)
}

fn ms(value: Option<f64>) -> String {
    value.map_or("–".to_owned(), |v| {
        if v < 10.0 {
            format!("{v:.2}")
        } else {
            format!("{v:.1}")
        }
    })
}

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or("–".to_owned(), |v| format!("{v:.digits$}"))
}

#[allow(clippy::too_many_arguments)]
async fn run_step(
    index: usize,
    offered: f64,
    viewers: usize,
    latency_viewers: usize,
    args: &Args,
    publishers: &mut [Publisher],
    counters: &Arc<Counters>,
    server_pid: Option<&str>,
    hz: f64,
) -> Result<Step, String> {
    let per_sec = offered / viewers as f64;
    let loadavg = probe::loadavg();
    let lost_before = counters.ended.load(Relaxed);
    let errors_before = counters.publisher_errors.load(Relaxed);
    let (_, failed) = offer(
        publishers,
        per_sec,
        Duration::from_secs(args.warmup_secs),
        b'w',
    )
    .await;
    if let Some(e) = failed {
        return Err(format!(
            "the publisher's connection failed in the warm-up: {e}"
        ));
    }
    // Tags 'A'.. mark each step's measured danmaku.
    let tag = b'A' + (index % 26) as u8;
    counters.latencies_us.lock().expect("samples").clear();
    counters.measured.store(0, Relaxed);
    counters.measuring.store(tag, Relaxed);
    let server_before = server_pid.and_then(probe::cpu_ticks);
    let client_before = probe::cpu_ticks("self").unwrap_or(0);
    let machine_before = probe::machine_busy_ticks();
    let danmaku_before = counters.danmaku.load(Relaxed);
    let bytes_before = counters.bytes.load(Relaxed);
    let frames_before = counters.frames.load(Relaxed);
    let started = Instant::now();
    let (sent, failed) = offer(publishers, per_sec, Duration::from_secs(args.secs), tag).await;
    if let Some(e) = &failed {
        println!("#   the publisher's connection failed: {e}");
        counters.publisher_gone.store(true, Relaxed);
    }
    let window = started.elapsed().as_secs_f64();
    let server_after = server_pid.and_then(probe::cpu_ticks);
    let client_after = probe::cpu_ticks("self").unwrap_or(0);
    let machine_after = probe::machine_busy_ticks();
    let delivered = counters.danmaku.load(Relaxed) - danmaku_before;
    let bytes = counters.bytes.load(Relaxed) - bytes_before;
    let frames = counters.frames.load(Relaxed) - frames_before;
    // Let the window's danmaku arrive: each goes to the viewers of its publisher's room.
    let expected = sent * (viewers / publishers.len()) as u64;
    let drain_until = Instant::now() + DRAIN_LIMIT;
    while counters.measured.load(Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    counters.measuring.store(0, Relaxed);
    let measured = counters.measured.load(Relaxed);
    let mut samples = std::mem::take(&mut *counters.latencies_us.lock().expect("samples"));
    samples.sort_unstable();
    let ticks_to_pct = |ticks: u64| ticks as f64 / hz / window * 100.0;
    let server_ticks = match (server_before, server_after) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let client_ticks = client_after - client_before;
    let other_cpu_pct = match (machine_before, machine_after) {
        (Some(a), Some(b)) => Some(ticks_to_pct(
            (b - a).saturating_sub(client_ticks + server_ticks.unwrap_or(0)),
        )),
        _ => None,
    };
    let completeness = if expected == 0 {
        0.0
    } else {
        measured as f64 / expected as f64
    };
    let client_cpu_pct = ticks_to_pct(client_ticks);
    let viewers_lost = counters.ended.load(Relaxed) - lost_before;
    let expected_samples = sent / publishers.len() as u64 * latency_viewers as u64;
    let count_mismatch = if measured > expected {
        Some(format!(
            "counted {measured} deliveries of the window's danmaku, more than the {expected} sent"
        ))
    } else if measured == expected && samples.len() as u64 != expected_samples {
        Some(format!(
            "{} latency samples for {expected_samples} deliveries to the sampling viewers",
            samples.len()
        ))
    } else {
        None
    };
    if let Some(mismatch) = &count_mismatch {
        println!("#   !!! COUNTING IS WRONG, THE STEP IS NOT VALID: {mismatch}");
    }
    let valid = failed.is_none()
        && measured == expected
        && count_mismatch.is_none()
        && viewers_lost == 0
        && client_cpu_pct < 90.0;
    Ok(Step {
        offered,
        danmaku_per_sec: sent as f64 / window,
        sent,
        deliveries_per_sec: delivered as f64 / window,
        completeness,
        p50_ms: percentile(&samples, 50.0),
        p99_ms: percentile(&samples, 99.0),
        max_ms: samples.last().map(|v| f64::from(*v) / 1000.0),
        samples: samples.len(),
        server_cpu_pct: server_ticks.map(ticks_to_pct),
        server_us_per_delivery: server_ticks
            .filter(|_| delivered > 0)
            .map(|t| t as f64 / hz * 1e6 / delivered as f64),
        client_cpu_pct,
        other_cpu_pct,
        frames_per_sec: frames as f64 / window,
        bytes_per_delivery: if delivered > 0 {
            bytes as f64 / delivered as f64
        } else {
            0.0
        },
        viewers_lost,
        publisher_errors: counters.publisher_errors.load(Relaxed) - errors_before,
        count_mismatch,
        loadavg,
        valid,
    })
}

fn append_json(path: &Option<PathBuf>, value: &Value) {
    if let Some(path) = path {
        use std::io::Write;
        let written = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{value}"));
        if let Err(e) = written {
            eprintln!("warning: cannot write {}: {e}", path.display());
        }
    }
}

/// One server under test with its room, publisher and connected viewers, stepping up.
struct Bench {
    target: Target,
    server_pid: Option<String>,
    counters: Arc<Counters>,
    /// One per room, each sending into its own room.
    publishers: Vec<Publisher>,
    viewers: usize,
    /// How many of the viewers take latency samples.
    latency_viewers: usize,
    kb_per_connection: Option<f64>,
    /// The highest offered rate that was valid with p99 within the limit.
    knee: Option<f64>,
    /// Server µs per delivery at this bench's first valid step (the lowest rate).
    low_rate_us: Option<f64>,
    /// The sweep ended for this server (a step failed or went over the limit).
    done: bool,
}

/// The audience under test: `viewers` spread evenly over `rooms`, each room with its publisher.
#[derive(Clone, Copy)]
struct Shape {
    viewers: usize,
    rooms: usize,
}

/// Starts (or finds) the server, sets up its rooms and publishers, and connects every viewer.
async fn prepare(
    args: &Args,
    peer: Option<&str>,
    run_id: &str,
    shape: Shape,
) -> Result<Bench, String> {
    if shape.rooms == 0 || shape.viewers % shape.rooms != 0 {
        return Err(format!(
            "{} viewers do not spread evenly over {} rooms",
            shape.viewers, shape.rooms
        ));
    }
    let seed_hosts = if shape.rooms > 1 { shape.rooms } else { 0 };
    let target = start_target(args, peer, run_id, seed_hosts)?;
    let server_pid = target.pid_text();
    println!(
        "# target: {} at http://{} (pid {}, CPUs {}){}",
        target.name,
        target.addr,
        server_pid.as_deref().unwrap_or("?"),
        if args.no_pin { "any" } else { &args.server_cpu },
        target
            .log
            .as_ref()
            .map(|l| format!(", log {}", l.display()))
            .unwrap_or_default()
    );
    let counters = Arc::new(Counters::default());
    let rooms = if shape.rooms == 1 {
        vec![set_up_room(&target, &counters).await?]
    } else {
        hosts::set_up_rooms(&target, shape.rooms).await?
    };
    let mut publishers = Vec::with_capacity(rooms.len());
    let mut room_ids = Vec::with_capacity(rooms.len());
    for (i, (room, stream, frames)) in rooms.into_iter().enumerate() {
        let (read, write) = stream.into_split();
        tokio::spawn(drain(read, frames, counters.clone()));
        publishers.push(Publisher {
            write,
            peer: target.data_dir.is_none(),
            seq: 0,
            out: Vec::new(),
            // Any non-zero start works for the xorshift.
            mask: 0x9e37_79b9_u32.wrapping_add(i as u32),
        });
        room_ids.push(room);
    }

    let n = shape.viewers;
    let tokens: Vec<Option<String>> = if target.data_dir.is_some() {
        let count = if args.guests == 0 {
            n
        } else {
            args.guests.min(n)
        };
        let started = Instant::now();
        let tokens = guest_tokens(target.addr, count).await?;
        println!(
            "# {count} guest sessions for {n} viewers in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        (0..n).map(|i| Some(tokens[i % count].clone())).collect()
    } else {
        vec![None; n]
    };
    let rss_before = server_pid.as_deref().and_then(probe::rss_kb);
    let gate = Arc::new(Semaphore::new(args.connect_parallel.max(1)));
    let every = (n / args.latency_viewers.clamp(1, n)).max(1);
    // Chosen by position before anything is sent, never by how a viewer is doing.
    let samples_latency =
        |i: usize| args.latency_viewers > 0 && i % every == 0 && i / every < args.latency_viewers;
    let latency_viewers = (0..n).filter(|&i| samples_latency(i)).count();
    println!(
        "# latency: every danmaku at {latency_viewers} of the {n} viewers (every {every}th in \
         connection order, chosen before the run); the others count every danmaku and byte"
    );
    let audience = audience::Audience::new().map_err(|e| format!("an epoll set: {e}"))?;
    tokio::spawn(audience.clone().read(counters.clone()));
    let joining = Instant::now();
    for (i, token) in tokens.into_iter().enumerate() {
        tokio::spawn(viewer(
            target.addr,
            token,
            room_ids[i % room_ids.len()],
            samples_latency(i),
            counters.clone(),
            gate.clone(),
            audience.clone(),
        ));
    }
    loop {
        let joined = counters.joined.load(Relaxed);
        let failed = counters.failed.load(Relaxed) + counters.ended.load(Relaxed);
        if failed > 0 {
            return Err(format!(
                "{failed} viewer(s) could not connect or were closed; first: {} / {:?}",
                counters.first_failure.lock().expect("failure text"),
                counters.close_reasons.lock().expect("close reasons")
            ));
        }
        if joined == n {
            break;
        }
        if joining.elapsed() > JOIN_LIMIT {
            return Err(format!(
                "only {joined} of {n} viewers joined within {JOIN_LIMIT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let join_secs = joining.elapsed().as_secs_f64();
    // Let the audience announcements and allocations settle before reading memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = server_pid.as_deref().and_then(probe::rss_kb);
    let kb_per_connection = match (rss_before, rss_after) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / n as f64),
        _ => None,
    };
    println!(
        "# {}: {n} viewers joined in {join_secs:.1} s; server RSS {} → {} KiB: {} KiB per connection",
        target.name,
        rss_before.map_or("?".into(), |v| v.to_string()),
        rss_after.map_or("?".into(), |v| v.to_string()),
        opt(kb_per_connection, 1)
    );
    append_json(
        &args.json,
        &json!({"kind": "run", "target": target.name, "viewers": n,
                "rss_before_kb": rss_before, "rss_after_kb": rss_after,
                "kb_per_connection": kb_per_connection, "join_secs": join_secs,
                "client_queue": args.client_queue, "loadavg": probe::loadavg()}),
    );
    Ok(Bench {
        target,
        server_pid,
        counters,
        publishers,
        viewers: n,
        latency_viewers,
        kb_per_connection,
        knee: None,
        low_rate_us: None,
        done: false,
    })
}

impl Bench {
    /// Runs step `index` at `offered` deliveries/s, prints its row and returns it; marks the
    /// bench done when the step failed or went over the p99 limit.
    async fn step(&mut self, args: &Args, index: usize, offered: f64, hz: f64) -> Option<Step> {
        let name = self.target.name;
        let step = run_step(
            index,
            offered,
            self.viewers,
            self.latency_viewers,
            args,
            &mut self.publishers,
            &self.counters,
            self.server_pid.as_deref(),
            hz,
        )
        .await;
        let step = match step {
            Ok(step) => step,
            Err(e) => {
                println!("| {name} | {offered:.0} | | | | | | | | | | | | no ({e}) |");
                self.done = true;
                return None;
            }
        };
        // Other work on the machine matters less when this runs ahead of it (negative nice).
        let busy = step.other_cpu_pct.is_some_and(|o| o > 10.0) && !args.boost;
        let over = step.p99_ms.is_none_or(|p| p > args.p99_limit_ms);
        let verdict = match (step.valid, busy, over) {
            (true, false, false) => "yes".to_owned(),
            (true, false, true) => "yes (p99 over the limit)".to_owned(),
            (true, true, _) => "yes (machine busy: re-run)".to_owned(),
            (false, _, _) => {
                let mut why = Vec::new();
                if step.completeness < 1.0 {
                    why.push("delivery < 100 %".to_owned());
                }
                if step.viewers_lost > 0 {
                    why.push(format!("{} viewers dropped", step.viewers_lost));
                }
                if step.client_cpu_pct >= 90.0 {
                    why.push("client ≥ 90 %".to_owned());
                }
                if step.count_mismatch.is_some() {
                    why.push("client miscounted".to_owned());
                }
                format!("no ({})", why.join(", "))
            }
        };
        println!(
            "| {name} | {:.0} | {:.1} | {:.0} | {:.4} % | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} |",
            step.offered,
            step.danmaku_per_sec,
            step.deliveries_per_sec,
            step.completeness * 100.0,
            ms(step.p50_ms),
            ms(step.p99_ms),
            ms(step.max_ms),
            opt(step.server_cpu_pct, 0),
            opt(step.server_us_per_delivery, 2),
            opt(self.kb_per_connection, 1),
            step.client_cpu_pct,
            opt(step.other_cpu_pct, 0),
            verdict
        );
        if step.frames_per_sec > 0.0 {
            println!(
                "#   client: {:.0} frames/s to the viewers ({:.1} danmaku each), {:.2} µs of client \
                 CPU per frame, {:.0} % per 1 M deliveries/s",
                step.frames_per_sec,
                step.deliveries_per_sec / step.frames_per_sec,
                step.client_cpu_pct * 1e4 / step.frames_per_sec,
                step.client_cpu_pct / (step.deliveries_per_sec / 1e6)
            );
        }
        if step.publisher_errors > 0 {
            println!(
                "#   the publisher got {} error(s); last: {}",
                step.publisher_errors,
                self.counters.last_error.lock().expect("error text")
            );
        }
        if step.viewers_lost > 0 {
            println!(
                "#   connections ended: {:?}",
                self.counters.close_reasons.lock().expect("close reasons")
            );
        }
        append_json(
            &args.json,
            &json!({"kind": "step", "target": name, "viewers": self.viewers, "step": index,
                    "offered": step.offered, "danmaku_per_sec": step.danmaku_per_sec,
                    "sent": step.sent, "deliveries_per_sec": step.deliveries_per_sec,
                    "completeness": step.completeness, "p50_ms": step.p50_ms,
                    "p99_ms": step.p99_ms, "max_ms": step.max_ms, "samples": step.samples,
                    "server_cpu_pct": step.server_cpu_pct,
                    "server_us_per_delivery": step.server_us_per_delivery,
                    "kb_per_connection": self.kb_per_connection,
                    "client_cpu_pct": step.client_cpu_pct, "other_cpu_pct": step.other_cpu_pct,
                    "client_cpu_pct_per_million": step.client_cpu_pct
                        / (step.deliveries_per_sec / 1e6),
                    "count_mismatch": step.count_mismatch,
                    "bytes_per_delivery": step.bytes_per_delivery,
                    "frames_per_sec": step.frames_per_sec,
                    "client_us_per_frame": step.client_cpu_pct * 1e4 / step.frames_per_sec,
                    "viewers_lost": step.viewers_lost,
                    "publisher_errors": step.publisher_errors, "loadavg": step.loadavg,
                    "valid": step.valid, "machine_busy": busy}),
        );
        if step.valid && self.low_rate_us.is_none() {
            self.low_rate_us = step.server_us_per_delivery;
        }
        if step.valid && !over {
            self.knee = Some(step.offered);
        }
        if self.counters.publisher_gone.load(Relaxed) {
            println!("# {name}: the publisher's or host's connection ended; stopping");
            self.done = true;
        }
        if !step.valid || over {
            self.done = true;
        }
        Some(step)
    }

    fn stop(&mut self) {
        let rss_end = self.server_pid.as_deref().and_then(probe::rss_kb);
        println!(
            "# {}: server RSS at the end: {} KiB; load {}",
            self.target.name,
            rss_end.map_or("?".into(), |v| v.to_string()),
            probe::loadavg()
        );
        self.target.stop();
    }
}

/// The head of the table `Bench::step` prints a row of.
fn print_step_header() {
    println!(
        "\n| server | offered deliveries/s | danmaku/s | deliveries/s | completeness | p50 ms | p99 ms | max ms \
         | server CPU % | server µs/delivery | server KiB/conn | client CPU % | other CPU % | valid |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
}

/// `a / b` with both figures, for the comparison's summary.
fn ratio(what: &str, unit: &str, ours: Option<f64>, peer: Option<f64>) {
    let shown = |v: Option<f64>| opt(v, 2);
    let ratio = match (ours, peer) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_owned(),
    };
    println!(
        "# {what}: RoomManager {} {unit}, Node ws {} {unit}; RoomManager / Node ws = {ratio}",
        shown(ours),
        shown(peer)
    );
}

async fn run(args: Args) -> Result<(), String> {
    now_ns();
    if args.viewers == 0 {
        return Err("--viewers must be at least 1".into());
    }
    let run_id = format!("{}-{}", std::process::id(), now_unix());
    let hz = probe::clock_ticks() as f64;
    let nice = probe::nice("self").unwrap_or(0);
    let group = fs::read_to_string("/proc/self/autogroup").unwrap_or_default();
    println!(
        "# machine: {} × {}; client on CPUs {}, nice {nice} ({}), open-file limit {}, load {}",
        probe::cpu_count(),
        probe::cpu_model(),
        probe::affinity(),
        group.trim(),
        probe::open_files_limit(),
        probe::loadavg()
    );
    if args.sweep {
        return sweep::run(&args, &run_id, hz).await;
    }
    if let Some(rooms) = args.hold_rooms {
        return hosts::hold(&args, &run_id, rooms).await;
    }
    let shape = Shape {
        viewers: args.viewers,
        rooms: 1,
    };
    let mut benches = if args.compare {
        vec![
            prepare(&args, None, &run_id, shape).await?,
            prepare(&args, Some("spawn"), &run_id, shape).await?,
        ]
    } else {
        vec![prepare(&args, args.peer.as_deref(), &run_id, shape).await?]
    };
    print_step_header();
    let rates: Vec<f64> = if args.rates.is_empty() {
        (0..args.max_steps)
            .map(|i| args.start_rate * 2f64.powi(i as i32))
            .collect()
    } else {
        args.rates.iter().copied().take(args.max_steps).collect()
    };
    for (index, offered) in rates.into_iter().enumerate() {
        // Each server goes first every other step, so neither always runs on a warmer machine.
        let mut order: Vec<usize> = (0..benches.len()).collect();
        if index % 2 == 1 {
            order.reverse();
        }
        for i in order {
            if !benches[i].done {
                benches[i].step(&args, index, offered, hz).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        if benches.iter().all(|b| b.done) {
            break;
        }
    }
    if let [ours, peer] = &benches[..] {
        println!(
            "\n# compared in one run, {} viewers each, p99 limit {} ms; load {}",
            args.viewers,
            args.p99_limit_ms,
            probe::loadavg()
        );
        ratio(
            "knee (highest valid step with p99 within the limit)",
            "deliveries/s",
            ours.knee,
            peer.knee,
        );
        ratio(
            "server µs per delivery at the first step",
            "µs",
            ours.low_rate_us,
            peer.low_rate_us,
        );
        ratio(
            "server memory per idle connection",
            "KiB",
            ours.kb_per_connection,
            peer.kb_per_connection,
        );
    }
    for bench in &mut benches {
        bench.stop();
    }
    Ok(())
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
