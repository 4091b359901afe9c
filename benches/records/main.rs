//! `records-fill`: fills a data dir with generated recordings for the catalogue benchmark
//! (docs/BENCHMARKS.md, "Recordings catalogue and search").
//!
//! Goes through the Store API the server itself uses: `--hosts` verified accounts (each gets its
//! room), then `--records` recordings spread over them, each a live session listed with
//! `add_record` as the rooms do when a recording is ready. Titles mix Latin words and Chinese
//! (`周五直播` in every fortieth), durations and start times vary; views stay 0 (the watch
//! statistics count them), so `most_viewed` sorts on ties. Run it on a tmpfs (`/dev/shm`): every record is a
//! committed write transaction, and the disk's flushes would dominate.
//!
//! Build: `cargo build --release --features bench --bin records-fill roommanager`.

// Cargo.toml sets `autobenches = false`; should Cargo ever infer a bench target from this path
// (benches/*/main.rs) again, compiled as a test harness the file is empty.
#![cfg(not(test))]

#[path = "../common/accounts.rs"]
mod accounts;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use roommanager::store::Store;

use accounts::verified_account;

/// Fills a RoomManager data dir with generated recordings.
#[derive(Parser, Debug)]
#[command(name = "records-fill")]
struct Args {
    /// The data dir to fill (created if missing; must not be in use by a server).
    #[arg(long)]
    data_dir: PathBuf,
    /// How many recordings.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// How many hosts they are spread over.
    #[arg(long, default_value_t = 1_000)]
    hosts: u64,
}

const WORDS: [&str; 12] = [
    "Morning", "Jazz", "Yoga", "Cello", "Coding", "Chess", "Cooking", "Travel", "Piano", "Night",
    "Quiet", "Retro",
];
const CJK: [&str; 4] = ["周五直播", "音乐现场", "深夜聊天", "游戏实况"];
const START: u64 = 1_760_000_000;

fn main() -> ExitCode {
    let args = Args::parse();
    match fill(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("records-fill: {e}");
            ExitCode::FAILURE
        }
    }
}

fn fill(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open(&args.data_dir)?;
    let began = Instant::now();
    let mut hosts = Vec::new();
    for n in 0..args.hosts.max(1) {
        let username = format!("host{n:05}");
        hosts.push(verified_account(&store, n, &username, START, START)?);
    }
    eprintln!("{} hosts in {:.1?}", hosts.len(), began.elapsed());
    for n in 0..args.records {
        let (host, room) = hosts[(n % hosts.len() as u64) as usize];
        let word = |k: u64| WORDS[((n / k) % WORDS.len() as u64) as usize];
        let title = if n % 10 == 0 {
            format!("{} {} #{n}", CJK[((n / 10) % 4) as usize], word(7))
        } else {
            format!("{} {} session #{n}", word(1), word(13))
        };
        let started_at = START + n * 600;
        let session = store.start_live_session(room, host, title, format!("b{n}"), started_at)?;
        store.end_live_session(session.id, started_at + 60)?;
        let duration = 60 + (n * 7919) % 7200;
        let url = format!("/records/files/b{n}/session_{started_at}.mp4");
        store.add_record(&session, duration, url, None)?;
        if (n + 1) % 10_000 == 0 {
            eprintln!("{} records in {:.1?}", n + 1, began.elapsed());
        }
    }
    store.close()?;
    Ok(())
}
