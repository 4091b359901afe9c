//! Many live rooms at once: host accounts with known session tokens written into a fresh data
//! dir before the server opens it (registering hundreds of hosts over HTTP would spend minutes
//! of the server's core on password hashes and mail), each host then connected and live. The
//! many-rooms case of `--sweep` chats through these hosts; `--hold-rooms` keeps them live for the
//! HTTP benchmark (benches/http/run.sh). The Node peer's rooms are plain room numbers it learns
//! from `join_room` (benches/peer/server.js).

#[path = "../common/accounts.rs"]
mod accounts;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use roommanager::model::{LoginKind, Session, TokenHash};
use roommanager::store::Store;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::{expect_message, start_target, wire, Args, Counters, Target};

/// A room under test: its id (none for the peer's single room), and its publisher's connection.
pub type RoomSetUp = (Option<u64>, TcpStream, wire::FrameBuffer);

/// Hosts going live at once.
const PARALLEL: usize = 32;
/// The hosts' sessions outlive any run.
const SESSION_SECS: u64 = 30 * 24 * 3600;

/// Host `n`'s session token: 64 hex digits, as the server issues them.
fn token(n: usize) -> String {
    format!("{:064x}", (0xfa40_u64 << 32) | n as u64)
}

/// Writes `rooms` verified hosts (each with its room) and a session for each into `data_dir`,
/// which must not hold them yet; the server is started on it afterwards.
pub fn seed(data_dir: &Path, rooms: usize) -> Result<(), String> {
    let now = super::now_unix();
    let store = Store::open(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    for n in 0..rooms {
        let (user_id, _) =
            accounts::verified_account(&store, n as u64, &format!("host{n:05}"), now, now)
                .map_err(|e| format!("seeding host {n}: {e}"))?;
        let hash = TokenHash(
            Sha256::digest(token(n).as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        );
        let session = Session {
            user_id,
            created_at: now,
            expires_at: now + SESSION_SECS,
        };
        store
            .start_session(&hash, &session, LoginKind::Password, "127.0.0.1".into())
            .map_err(|e| format!("seeding host {n}'s session: {e}"))?;
    }
    store.close().map_err(|e| e.to_string())
}

/// One room per host: on RoomManager each seeded host goes live and chats in its own room; on the
/// peer a client joins room `k` for each. Returns them in room order.
pub async fn set_up_rooms(target: &Target, rooms: usize) -> Result<Vec<RoomSetUp>, String> {
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let on_peer = target.data_dir.is_none();
    let mut tasks = Vec::with_capacity(rooms);
    for n in 0..rooms {
        let (addr, gate) = (target.addr, gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("the gate stays open");
            let token = (!on_peer).then(|| token(n));
            let (mut stream, mut frames) = wire::connect(addr, token.as_deref())
                .await
                .map_err(|e| format!("host {n}: {e}"))?;
            let room = if on_peer {
                let room = n as u64 + 1;
                let join = json!({"type": "join_room", "room_id": room}).to_string();
                wire::send_text(&mut stream, &join)
                    .await
                    .map_err(|e| e.to_string())?;
                expect_message(&mut stream, &mut frames, "room_info").await?;
                room
            } else {
                let start = json!({"type": "start_live", "title": format!("bench room {n}")});
                wire::send_text(&mut stream, &start.to_string())
                    .await
                    .map_err(|e| e.to_string())?;
                let started = expect_message(&mut stream, &mut frames, "live_started").await?;
                started["room_id"]
                    .as_u64()
                    .ok_or_else(|| format!("no room id in {started}"))?
            };
            Ok::<RoomSetUp, String>((Some(room), stream, frames))
        }));
    }
    let mut set_up = Vec::with_capacity(rooms);
    for task in tasks {
        set_up.push(task.await.map_err(|e| e.to_string())??);
    }
    Ok(set_up)
}

/// `--hold-rooms`: RoomManager with `rooms` live rooms, held until standard input closes or a
/// signal, for load from other tools (wrk).
pub async fn hold(args: &Args, run_id: &str, rooms: usize) -> Result<(), String> {
    if rooms == 0 {
        return Err("--hold-rooms needs at least one room".into());
    }
    let mut target = start_target(args, None, run_id, rooms)?;
    let counters = Arc::new(Counters::default());
    let live = set_up_rooms(&target, rooms).await?;
    let mut hosts = Vec::with_capacity(live.len());
    for (_, stream, frames) in live {
        let (read, write) = stream.into_split();
        tokio::spawn(super::drain(read, frames, counters.clone()));
        // The write half closes the host's connection when dropped.
        hosts.push(write);
    }
    println!(
        "ready: http://{} ({rooms} rooms live; server pid {})",
        target.addr,
        target.pid_text().as_deref().unwrap_or("?")
    );
    let _ = std::io::stdout().flush();
    super::serve::stop_signal().await;
    drop(hosts);
    target.stop();
    Ok(())
}
