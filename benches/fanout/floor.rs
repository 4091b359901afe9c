//! `fanout --floor`: what the kernel alone charges for a delivery made as one send per viewer,
//! the floor under any server that fans out that way (docs/BENCHMARKS.md, "Fan-out: the kernel's
//! floor").
//!
//! N loopback TCP connections: this process accepts them and one thread, pinned to the server's
//! core, writes the same pre-built WebSocket text frame (a danmaku as RoomManager sends it) to
//! every socket with one `writev` each, from plain blocking std sockets with no async runtime. A
//! child process (this program again, `--floor-readers`, on the client's core) holds the other
//! ends in one epoll set and drains them. Each phase writes for `--secs`, at `--start-rate`
//! writes/s (whole rounds over the N sockets, as a room sends each danmaku to all its viewers)
//! and then as fast as the writer can, each without and with TCP_NODELAY (which the server sets
//! on every accepted connection). The writer thread's own user and system time
//! (`getrusage(RUSAGE_THREAD)`) over the writes is the floor.

use std::io::{self, BufRead, BufReader, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use roommanager::server::websocket::text_frame;
use serde_json::json;

use super::{append_json, epoll, probe, Args};

/// Rounds written before each phase's measured ones, so the sockets' buffers have grown.
const WARMUP_ROUNDS: u64 = 2;

/// The frame every socket gets: a danmaku shaped like RoomManager's, framed by the server's own
/// code.
fn danmaku_frame() -> Bytes {
    text_frame(br#"{"type":"danmaku","id":4321,"user_id":2,"nickname":"fanpub","is_host":false,"text":"A t=123456789012 s=4321 fan-out benchmark danmaku","offset_ms":1004321}"#)
}

/// One phase's figures.
struct Phase {
    writes: u64,
    secs: f64,
    user_us: f64,
    system_us: f64,
    reader_us: Option<f64>,
}

pub fn main(args: &Args) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let n = args.viewers;
    if n == 0 || args.start_rate <= 0.0 {
        return Err("--floor needs --viewers ≥ 1 and --start-rate > 0".into());
    }
    let frame = danmaku_frame();
    let hz = probe::clock_ticks() as f64;
    println!(
        "# kernel floor: {n} loopback connections, one {}-byte frame per write (writev), writer \
         on CPUs {}, readers on CPUs {}; open-file limit {}, load {}",
        frame.len(),
        if args.no_pin { "any" } else { &args.server_cpu },
        probe::affinity(),
        probe::open_files_limit(),
        probe::loadavg()
    );
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("listen: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut readers = spawn_readers(addr, n)?;
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let (socket, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        sockets.push(socket);
    }
    let stdout = readers.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    match lines.next() {
        Some(Ok(line)) if line == "ready" => {}
        other => return Err(format!("the readers did not start: {other:?}")),
    }
    if !args.no_pin {
        pin_this_thread(&args.server_cpu)?;
    }
    println!(
        "\n| writes | TCP_NODELAY | writes/s | writer user µs/write | writer system µs/write \
         | writer µs/write | readers µs/write |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut written = 0;
    let readers_pid = readers.id().to_string();
    for (paced, label) in [(true, "paced"), (false, "as fast as possible")] {
        for nodelay in [false, true] {
            for socket in &sockets {
                socket
                    .set_nodelay(nodelay)
                    .map_err(|e| format!("TCP_NODELAY: {e}"))?;
            }
            let rate = paced.then_some(args.start_rate);
            let phase = write_phase(&sockets, &frame, rate, args.secs, &readers_pid, hz)?;
            written += phase.writes + WARMUP_ROUNDS * n as u64;
            let per = |us: f64| us / phase.writes as f64;
            println!(
                "| {label}{} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
                rate.map(|r| format!(" at {r:.0}/s")).unwrap_or_default(),
                if nodelay { "on" } else { "off" },
                phase.writes as f64 / phase.secs,
                per(phase.user_us),
                per(phase.system_us),
                per(phase.user_us + phase.system_us),
                phase
                    .reader_us
                    .map_or("–".to_owned(), |us| format!("{:.2}", per(us)))
            );
            append_json(
                &args.json,
                &json!({"kind": "floor", "viewers": n, "paced_rate": rate, "nodelay": nodelay,
                        "writes": phase.writes, "secs": phase.secs,
                        "writer_user_us_per_write": per(phase.user_us),
                        "writer_system_us_per_write": per(phase.system_us),
                        "readers_us_per_write": phase.reader_us.map(per),
                        "frame_bytes": frame.len(), "loadavg": probe::loadavg()}),
            );
        }
    }
    // The readers see every connection end, then say how much they got.
    drop(sockets);
    let received = lines
        .next()
        .and_then(Result::ok)
        .and_then(|line| line.strip_prefix("received ")?.parse::<u64>().ok());
    let _ = readers.wait();
    let expected = written * frame.len() as u64;
    match received {
        Some(bytes) if bytes == expected => {
            println!(
                "\n# the readers received all {written} frames ({bytes} bytes); load {}",
                probe::loadavg()
            )
        }
        other => {
            return Err(format!(
                "!!! the readers received {other:?} bytes, not the {expected} written"
            ))
        }
    }
    Ok(())
}

/// Starts the readers: this program again in `--floor-readers` mode, on this process's CPUs.
fn spawn_readers(addr: SocketAddr, n: usize) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    Command::new(exe)
        .args(["--floor-readers", "--listen", &addr.to_string()])
        .args(["--viewers", &n.to_string()])
        .env("FANOUT_PINNED", "1")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the readers: {e}"))
}

/// Writes `frame` to every socket, round after round, for `secs` after the warm-up rounds:
/// `rate` writes/s, or back to back without one.
fn write_phase(
    sockets: &[TcpStream],
    frame: &[u8],
    rate: Option<f64>,
    secs: u64,
    readers_pid: &str,
    hz: f64,
) -> Result<Phase, String> {
    let round = |sockets: &[TcpStream]| -> Result<(), String> {
        for mut socket in sockets {
            let sent = socket
                .write_vectored(&[IoSlice::new(frame)])
                .map_err(|e| format!("write: {e}"))?;
            if sent != frame.len() {
                // A blocking socket writes all of a frame this small, or waits for room.
                return Err(format!("a short write: {sent} of {} bytes", frame.len()));
            }
        }
        Ok(())
    };
    for _ in 0..WARMUP_ROUNDS {
        round(sockets)?;
    }
    let length = Duration::from_secs(secs);
    let round_every = rate.map(|r| Duration::from_secs_f64(sockets.len() as f64 / r));
    let readers_before = probe::cpu_ticks(readers_pid);
    let (user_before, system_before) = thread_cpu_us();
    let started = Instant::now();
    let mut rounds = 0u64;
    loop {
        match round_every {
            Some(every) => {
                let due = every * rounds as u32;
                if due >= length {
                    break;
                }
                if let Some(wait) = (started + due).checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            None if started.elapsed() >= length => break,
            None => {}
        }
        round(sockets)?;
        rounds += 1;
    }
    let (user_after, system_after) = thread_cpu_us();
    if rate.is_some() {
        // The window is whole: the last round's pause belongs to it (and costs no CPU).
        if let Some(rest) = length.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let readers_after = probe::cpu_ticks(readers_pid);
    Ok(Phase {
        writes: rounds * sockets.len() as u64,
        secs,
        user_us: user_after - user_before,
        system_us: system_after - system_before,
        reader_us: readers_before
            .zip(readers_after)
            .map(|(a, b)| b.saturating_sub(a) as f64 / hz * 1e6),
    })
}

/// This thread's user and system CPU time so far, in µs.
fn thread_cpu_us() -> (f64, f64) {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage; RUSAGE_THREAD needs nothing else.
    let done = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    if done != 0 {
        return (0.0, 0.0);
    }
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    (us(usage.ru_utime), us(usage.ru_stime))
}

/// Pins the calling thread to the CPUs of a list like "0", "0,2" or "0-1".
fn pin_this_thread(cpus: &str) -> Result<(), String> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for part in cpus.split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let parse = |v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("{cpus:?} is not a CPU list like 0 or 0-1"))
        };
        for cpu in parse(first)?..=parse(last)? {
            // SAFETY: CPU_SET only writes inside `set`, ignoring CPUs beyond its size.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 is the calling thread.
    let pinned = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if pinned != 0 {
        return Err(format!(
            "cannot pin the writer to CPUs {cpus}: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// `--floor-readers`: connects `n` sockets to `addr`, says `ready`, drains them all until every
/// one has ended and prints `received BYTES`.
pub fn readers(addr: SocketAddr, n: usize) -> ExitCode {
    match drain_all(addr, n) {
        Ok(bytes) => {
            println!("received {bytes}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: floor readers: {e}");
            ExitCode::FAILURE
        }
    }
}

fn drain_all(addr: SocketAddr, n: usize) -> io::Result<u64> {
    let set = epoll::new_set()?;
    let mut sockets: Vec<Option<TcpStream>> = Vec::with_capacity(n);
    for i in 0..n {
        let socket = TcpStream::connect(addr)?;
        socket.set_nonblocking(true)?;
        epoll::watch(&set, &socket, i as u64)?;
        sockets.push(Some(socket));
    }
    println!("ready");
    io::stdout().flush()?;
    let mut events = vec![epoll::Event { events: 0, u64: 0 }; 1024];
    let mut buffer = vec![0u8; 64 * 1024];
    let (mut open, mut bytes) = (n, 0u64);
    while open > 0 {
        let ready = epoll::wait(&set, &mut events, -1)?;
        for event in &events[..ready] {
            let slot = &mut sockets[event.u64 as usize];
            let Some(socket) = slot else {
                continue;
            };
            // Once the writer has closed, read on to the end: no later edge would come.
            let hung_up = epoll::hung_up(event);
            loop {
                match socket.read(&mut buffer) {
                    Ok(0) => {
                        *slot = None;
                        open -= 1;
                        break;
                    }
                    Ok(read) => {
                        bytes += read as u64;
                        if read < buffer.len() && !hung_up {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(bytes)
}
