//! `stats-fill`: fills a data dir with a year of a busy LAN site for the statistics benchmark
//! (docs/BENCHMARKS.md, "Admin statistics over a year").
//!
//! Goes through the Store API the server itself uses, so the roll-ups are written as the server
//! writes them: `--users` verified accounts (each with its room) and a pool of recent guests;
//! `--logins` login events spread over the year (one in five a guest's), each a session stored
//! with `start_session` as a login does; `--lives` live sessions (started, ended, listed as a
//! recording); `--heartbeats` watch heartbeats of 15 s, given to `add_watching` in batches as
//! the watch statistics' writer does (a view is counted at its first heartbeat, twenty
//! heartbeats a view). Run it on a tmpfs (`/dev/shm`): every call is a committed transaction.
//!
//! Build: `cargo build --release --features bench --bin stats-fill --bin roommanager`.

// Cargo.toml sets `autobenches = false`; should Cargo ever infer a bench target from this path
// (benches/*/main.rs) again, compiled as a test harness the file is empty.
#![cfg(not(test))]

#[path = "../common/accounts.rs"]
mod accounts;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use accounts::verified_account;
use roommanager::model::{LoginKind, RecordId, Session, TokenHash, UserId};
use roommanager::store::{Store, WatchDelta};

/// Fills a RoomManager data dir with a year of logins, live sessions and watching.
#[derive(Parser, Debug)]
#[command(name = "stats-fill")]
struct Args {
    /// The data dir to fill (created if missing; must not be in use by a server).
    #[arg(long)]
    data_dir: PathBuf,
    /// The year ends here (unix seconds); default: now.
    #[arg(long)]
    end: Option<u64>,
    #[arg(long, default_value_t = 2_000)]
    users: u64,
    #[arg(long, default_value_t = 500)]
    guests: u64,
    #[arg(long, default_value_t = 2_000_000)]
    logins: u64,
    #[arg(long, default_value_t = 50_000)]
    lives: u64,
    #[arg(long, default_value_t = 5_000_000)]
    heartbeats: u64,
}

const YEAR: u64 = 365 * 86_400;
const HEARTBEAT_MS: u64 = 15_000;
const BEATS_PER_VIEW: u64 = 20;
const BATCH: u64 = 2_000;

fn main() -> ExitCode {
    let args = Args::parse();
    match fill(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stats-fill: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A cheap deterministic spread (splitmix64), so runs are comparable.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fill(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open(&args.data_dir)?;
    let end = args.end.unwrap_or_else(roommanager::store::unix_now);
    let start = end - YEAR;
    let began = Instant::now();
    let mut users = Vec::new();
    for n in 0..args.users.max(1) {
        let username = format!("user{n:05}");
        users.push(verified_account(
            &store,
            n,
            &username,
            start + mix(n) % YEAR,
            start,
        )?);
    }
    let mut guests = Vec::new();
    for n in 0..args.guests.max(1) {
        let hash = TokenHash(format!("bench-guest-{n}"));
        let guest = store.create_guest(
            format!("guest{n}"),
            &hash,
            end - 3_600,
            end,
            "10.0.0.1".to_owned(),
        )?;
        guests.push(guest.id);
    }
    eprintln!(
        "{} users, {} guests in {:.1?}",
        users.len(),
        guests.len(),
        began.elapsed()
    );

    for n in 0..args.logins {
        let at = start + n * YEAR / args.logins.max(1);
        let (user, kind) = if mix(n) % 5 == 0 {
            (
                guests[(mix(n) / 5 % guests.len() as u64) as usize],
                LoginKind::Guest,
            )
        } else {
            (
                users[(mix(n) / 5 % users.len() as u64) as usize].0,
                LoginKind::Password,
            )
        };
        let session = Session {
            user_id: user,
            created_at: at,
            expires_at: at + 86_400,
        };
        store.start_session(
            &TokenHash(format!("bench-login-{n}")),
            &session,
            kind,
            "10.0.0.1".to_owned(),
        )?;
        if (n + 1) % 200_000 == 0 {
            eprintln!("{} logins in {:.1?}", n + 1, began.elapsed());
        }
    }

    let mut records: Vec<RecordId> = Vec::new();
    for n in 0..args.lives {
        let (host, room) = users[(mix(n) % users.len() as u64) as usize];
        let started_at = start + n * YEAR / args.lives.max(1);
        let duration = 600 + mix(n) % (3 * 3_600);
        let session = store.start_live_session(
            room,
            host,
            format!("Session #{n}"),
            format!("s{n}"),
            started_at,
        )?;
        store.end_live_session(session.id, started_at + duration)?;
        let url = format!("/records/files/s{n}/session_{started_at}.mp4");
        records.push(store.add_record(&session, duration, url, None)?.id);
    }
    eprintln!("{} live sessions in {:.1?}", args.lives, began.elapsed());

    // Heartbeats in time order over the year; each batch is what the writer flushes at once.
    let views = args.heartbeats / BEATS_PER_VIEW;
    let mut batch = Vec::new();
    for beat in 0..args.heartbeats {
        let view = beat % views.max(1);
        let nth = beat / views.max(1);
        let at = start + view * YEAR / views.max(1) + nth * 15;
        // Recordings made before the view; a few popular ones draw most views.
        let made = ((at - start) * records.len() as u64 / YEAR).max(1);
        let pick = if mix(view) % 3 == 0 {
            mix(view) % 50
        } else {
            mix(view)
        };
        let record = records[(made - 1 - pick % made) as usize];
        let viewer = users[(mix(view + 7) % users.len() as u64) as usize].0;
        batch.push((
            (record, UserId(viewer.0)),
            WatchDelta {
                watched_ms: HEARTBEAT_MS,
                counted_at: (nth == 0).then_some(at),
                last_at: at,
            },
        ));
        if batch.len() as u64 == BATCH {
            store.add_watching(&batch)?;
            batch.clear();
        }
        if (beat + 1) % 1_000_000 == 0 {
            eprintln!("{} heartbeats in {:.1?}", beat + 1, began.elapsed());
        }
    }
    if !batch.is_empty() {
        store.add_watching(&batch)?;
    }
    eprintln!("done in {:.1?}", began.elapsed());
    store.close()?;
    Ok(())
}
