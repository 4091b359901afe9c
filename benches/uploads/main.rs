//! `upload-memory`: the server's peak memory while image bombs are uploaded (docs/BENCHMARKS.md).
//!
//! Starts the given `roommanager` binary on a fresh data dir and 127.0.0.1:0, makes two accounts
//! through the HTTP API (the verification links come from the server's log), builds a
//! single-colour lossless WebP of `--side`² pixels with the image crate, and sends `--uploads` of
//! them at once as one user's avatar. A second user uploads an ordinary picture while they run and
//! again afterwards. The server's `VmHWM` (peak resident size) and `VmRSS` come from
//! /proc/PID/status, sampled every 5 ms, so a server that dies on the way is still measured.
//!
//! Works against any build with the same API, so the same run measures a build before and after
//! a change: `upload-memory --binary /path/to/old/roommanager`.
//!
//! Build: `cargo build --release --features bench --bin upload-memory roommanager`.

// Cargo.toml sets `autobenches = false`; should Cargo ever infer a bench target from this path
// (benches/*/main.rs) again, compiled as a test harness the file is empty.
#![cfg(not(test))]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";
/// How long the server may take to start, to send a mail, or to answer one request.
const STEP: Duration = Duration::from_secs(120);

/// Peak memory of the real RoomManager binary under parallel image-bomb uploads.
#[derive(Parser, Debug)]
#[command(name = "upload-memory")]
struct Args {
    /// The RoomManager binary to measure.
    #[arg(long, default_value = "target/release/roommanager")]
    binary: PathBuf,
    /// Uploads sent at once.
    #[arg(long, default_value_t = 12)]
    uploads: usize,
    /// Width and height of the single-colour WebP, in pixels.
    #[arg(long, default_value_t = 8192)]
    side: u32,
    /// `uploads.decode_slots` for the server (left out of its config when not given, so builds
    /// without the setting run too).
    #[arg(long)]
    decode_slots: Option<usize>,
    /// Address-space limit of the server process, in MiB (setrlimit RLIMIT_AS): on a shared
    /// machine a build without the decode bounds fails its allocations instead of taking the
    /// machine's memory. 0 means no limit.
    #[arg(long, default_value_t = 8192)]
    memory_cap_mib: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upload-memory: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The server child, its log lines, and its data dir (removed when dropped).
struct Server {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    data_dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a pid this process started and still owns (not yet waited for).
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn start_server(args: &Args) -> Result<Server, String> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let data_dir =
        std::env::temp_dir().join(format!("upload-memory-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let mut config = String::from(
        "[limits]\nregister_per_ip = 1000\nlogin_per_ip = 1000\n\n\
         [media.rtmp]\nmanage_nginx = false\n",
    );
    if let Some(slots) = args.decode_slots {
        config.push_str(&format!("\n[uploads]\ndecode_slots = {slots}\n"));
    }
    let config_path = data_dir.join("bench.toml");
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let mut command = Command::new(&args.binary);
    command
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let cap = args.memory_cap_mib.saturating_mul(1024 * 1024);
    if cap > 0 {
        // SAFETY: only setrlimit(2), which is async-signal-safe, runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: cap,
                    rlim_max: cap,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", args.binary.display()))?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut server = Server {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        lines,
        data_dir,
    };
    let ready = server.wait_for_line(|l| l.contains("listening on http://"))?;
    let addr = ready
        .split("listening on http://")
        .nth(1)
        .map(str::trim)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("no address in {ready:?}"))?;
    server.addr = addr;
    Ok(server)
}

impl Server {
    fn wait_for_line(&self, found: impl Fn(&str) -> bool) -> Result<String, String> {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if found(&line) => return Ok(line),
                Ok(_) => {}
                Err(_) => return Err("the server's log did not show what was awaited".into()),
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`): status and body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> Result<(u16, String), String> {
    let exchange = || -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(STEP))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Accept: application/json\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        if let Some(token) = bearer {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer)?;
        Ok(answer)
    };
    let answer = exchange().map_err(|e| format!("{method} {path}: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: an answer without a head"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: a strange status line in {head:.80}"))?;
    Ok((status, body.to_owned()))
}

fn json_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &Value,
    want: u16,
) -> Result<Value, String> {
    let (status, text) = http(
        addr,
        method,
        path,
        None,
        "application/json",
        body.to_string().as_bytes(),
    )?;
    if status != want {
        return Err(format!("{method} {path}: HTTP {status}: {text:.300}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{method} {path}: {e}: {text:.300}"))
}

/// Registers `name`, opens the verification link the server logs, logs in; the session token.
fn account(server: &Server, name: &str) -> Result<String, String> {
    let email = format!("{name}@example.com");
    let register = json!({"username": name, "password": PASSWORD, "email": email});
    json_call(server.addr, "POST", "/api/v1/register", &register, 201)?;
    let to = format!("to={email}");
    let logged = server.wait_for_line(|l| l.contains(&to) && l.contains("verify?token="))?;
    let at = logged.find("verify?token=").ok_or("a link")? + "verify?token=".len();
    let token: String = logged[at..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    let (status, _) = http(
        server.addr,
        "GET",
        &format!("/verify?token={token}"),
        None,
        "text/plain",
        b"",
    )?;
    if status != 200 {
        return Err(format!("verifying {email}: HTTP {status}"));
    }
    let login = json!({"login": name, "password": PASSWORD});
    let answer = json_call(server.addr, "POST", "/api/v1/login", &login, 200)?;
    answer["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no token in {answer}"))
}

fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, format)
        .expect("encoding into memory cannot fail for these plain RGB(A) images");
    out.into_inner()
}

/// How one upload was answered: "200", or the status and error code.
fn outcome(answer: &Result<(u16, String), String>) -> String {
    match answer {
        Ok((200, _)) => "200".to_owned(),
        Ok((status, body)) => {
            let code = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "(no JSON code)".to_owned());
            format!("{status} {code}")
        }
        Err(e) => format!("failed: {e:.120}"),
    }
}

/// A field of /proc/PID/status, in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn run(args: &Args) -> Result<(), String> {
    let bomb = encode(
        DynamicImage::ImageRgba8(RgbaImage::from_pixel(
            args.side,
            args.side,
            Rgba([200, 30, 60, 255]),
        )),
        ImageFormat::WebP,
    );
    let ordinary = encode(
        DynamicImage::ImageRgb8(RgbImage::from_fn(600, 300, |x, y| {
            Rgb([x as u8, y as u8, 90])
        })),
        ImageFormat::Png,
    );
    let load_before = loadavg();
    let server = start_server(args)?;
    let pid = server.pid();
    let attacker = account(&server, "bomber")?;
    let neighbour = account(&server, "neighbour")?;
    let rss_idle = status_kib(pid, "VmRSS:").unwrap_or(0);

    let peak = Arc::new(AtomicU64::new(status_kib(pid, "VmHWM:").unwrap_or(0)));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                match status_kib(pid, "VmHWM:") {
                    Some(hwm) => peak.fetch_max(hwm, Ordering::Relaxed),
                    None => break,
                };
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let started = Instant::now();
    let addr = server.addr;
    let bomb = Arc::new(bomb);
    let uploads: Vec<_> = (0..args.uploads)
        .map(|_| {
            let (bomb, token) = (bomb.clone(), attacker.clone());
            std::thread::spawn(move || {
                let answer = http(
                    addr,
                    "PUT",
                    "/api/v1/me/avatar",
                    Some(&token),
                    "image/webp",
                    &bomb,
                );
                (answer, started.elapsed())
            })
        })
        .collect();
    let during = http(
        addr,
        "PUT",
        "/api/v1/me/avatar",
        Some(&neighbour),
        "image/png",
        &ordinary,
    );
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    for upload in uploads {
        let (answer, took) = upload.join().map_err(|_| "an upload thread panicked")?;
        *outcomes.entry(outcome(&answer)).or_default() += 1;
        slowest = slowest.max(took);
    }
    let after = http(
        addr,
        "PUT",
        "/api/v1/me/avatar",
        Some(&neighbour),
        "image/png",
        &ordinary,
    );
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    let rss_after = status_kib(pid, "VmRSS:");
    let peak = peak
        .load(Ordering::Relaxed)
        .max(status_kib(pid, "VmHWM:").unwrap_or(0));

    println!("binary:            {}", args.binary.display());
    println!(
        "bomb:              {}x{} single-colour lossless WebP, {} bytes, {} at once",
        args.side,
        args.side,
        bomb.len(),
        args.uploads
    );
    println!(
        "decode_slots:      {}",
        args.decode_slots
            .map_or("server default".to_owned(), |s| s.to_string())
    );
    println!(
        "machine:           {} CPUs, load average {load_before} before, {} after",
        std::thread::available_parallelism().map_or(0, usize::from),
        loadavg()
    );
    println!(
        "server RSS:        {} idle, peak (VmHWM) {}, after {}",
        mib(rss_idle),
        mib(peak),
        rss_after.map_or("(server gone)".to_owned(), mib)
    );
    println!(
        "answers:           {} (all answered within {:.2} s)",
        outcomes
            .iter()
            .map(|(outcome, n)| format!("{n}× {outcome}"))
            .collect::<Vec<_>>()
            .join(", "),
        slowest.as_secs_f64()
    );
    println!(
        "ordinary upload:   during: {}, after: {}",
        outcome(&during),
        outcome(&after)
    );
    if !Path::new(&format!("/proc/{pid}")).exists() {
        println!("the server process is gone");
    }
    Ok(())
}
