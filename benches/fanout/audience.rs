//! The viewers once they have joined: every viewer socket sits in one edge-triggered epoll set,
//! read by one task. A frame then costs the load generator one `read` into a shared buffer and
//! a scan for its danmaku, not a task wake-up and poll of its own; the set's own descriptor is
//! what the tokio runtime waits on, so the publisher's pacing shares the thread as before.
//!
//! Every viewer still reads as soon as its socket is readable (nothing waits on a timer), so the
//! server sees the same readers it saw when each viewer was a task.

use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use tokio::io::unix::AsyncFd;

use super::epoll;
use super::wire::{self, Head};
use super::Counters;

/// Readiness events taken from the set per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 1024;
/// The one buffer every read goes into: a viewer behind by many frames is caught up in one read.
const READ_BUFFER: usize = 64 * 1024;

struct Viewer {
    socket: TcpStream,
    /// The start of a frame whose rest has not arrived yet; empty (unallocated) nearly always.
    carry: Vec<u8>,
    latency: bool,
}

/// The joined viewers and the epoll set they are in.
pub struct Audience {
    set: AsyncFd<OwnedFd>,
    /// Indexed by the number each socket is registered with. Locked only by the viewer that
    /// joins and by the one reading task, both on the load generator's single thread, so the
    /// lock is never contended.
    viewers: Mutex<Vec<Option<Viewer>>>,
}

impl Audience {
    /// Must be called inside the tokio runtime (the set registers with its reactor).
    pub fn new() -> io::Result<Arc<Audience>> {
        let fd = epoll::new_set()?;
        // SAFETY: the AsyncFd owns the descriptor from here on and never closes or replaces it
        // while it is registered.
        let set = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)? };
        Ok(Arc::new(Audience {
            set,
            viewers: Mutex::new(Vec::new()),
        }))
    }

    /// Hands a joined viewer's socket over, with the bytes it read past its last whole frame.
    pub fn add(&self, socket: TcpStream, carry: Vec<u8>, latency: bool) -> io::Result<()> {
        socket.set_nonblocking(true)?;
        let mut viewers = self.viewers.lock().expect("the viewers");
        // Edge-triggered: a drained socket is not looked at again until more arrives.
        epoll::watch(self.set.get_ref(), &socket, viewers.len() as u64)?;
        viewers.push(Some(Viewer {
            socket,
            carry,
            latency,
        }));
        Ok(())
    }

    /// Reads every viewer whose socket is readable, until the set itself fails.
    pub async fn read(self: Arc<Audience>, counters: Arc<Counters>) {
        let mut events = vec![epoll::Event { events: 0, u64: 0 }; EVENTS_PER_WAIT];
        let mut buffer = vec![0u8; READ_BUFFER];
        loop {
            let Ok(mut ready) = self.set.readable().await else {
                eprintln!("error: the viewers' epoll set failed");
                return;
            };
            let n = match epoll::wait(self.set.get_ref(), &mut events, 0) {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("error: epoll_wait on the viewers: {e}");
                    return;
                }
            };
            if n == 0 {
                ready.clear_ready();
                continue;
            }
            {
                let mut viewers = self.viewers.lock().expect("the viewers");
                for event in &events[..n] {
                    let slot = &mut viewers[event.u64 as usize];
                    if let Some(viewer) = slot {
                        let hung_up = epoll::hung_up(event);
                        if let Err(reason) = viewer.take(&mut buffer, hung_up, &counters) {
                            counters.viewer_ended(reason);
                            // Closing the socket also takes it out of the set.
                            *slot = None;
                        }
                    }
                }
            }
            // The publisher's pacing and the other tasks get their turn between batches.
            tokio::task::yield_now().await;
        }
    }
}

impl Viewer {
    /// Reads until the socket is drained (to its end once the server `hung_up`), counting the
    /// whole frames; `Err` carries why the connection ended.
    fn take(
        &mut self,
        buffer: &mut [u8],
        hung_up: bool,
        counters: &Counters,
    ) -> Result<(), String> {
        loop {
            let n = match self.socket.read(buffer) {
                Ok(0) => return Err("connection ended".to_owned()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.to_string()),
            };
            self.count(&buffer[..n], counters)?;
            // A TCP read hands over all it has up to the buffer's size: a shorter one drained
            // the socket, and the next arrival raises a new edge (the end of the connection
            // raises none after a hang-up already seen).
            if n < buffer.len() && !hung_up {
                return Ok(());
            }
        }
    }

    /// Counts the whole frames in what was carried over and `read`; keeps the rest.
    fn count(&mut self, read: &[u8], counters: &Counters) -> Result<(), String> {
        if self.carry.is_empty() {
            let used = frames(read, self.latency, counters)?;
            self.carry.extend_from_slice(&read[used..]);
        } else {
            self.carry.extend_from_slice(read);
            let used = frames(&self.carry, self.latency, counters)?;
            self.carry.drain(..used);
            if self.carry.is_empty() {
                // A big frame's room goes back; the next partial frame allocates afresh.
                self.carry = Vec::new();
            }
        }
        Ok(())
    }
}

/// Counts the whole frames at the front of `data`; returns how many bytes they took.
fn frames(data: &[u8], latency: bool, counters: &Counters) -> Result<usize, String> {
    let mut used = 0;
    loop {
        let rest = &data[used..];
        let frame = match wire::frame_head(rest).map_err(|e| e.to_string())? {
            Head::Complete(frame) => frame,
            Head::Partial { .. } => return Ok(used),
        };
        let payload = &rest[frame.payload.clone()];
        match frame.opcode {
            wire::OP_TEXT if frame.fin => counters.viewer_frame(payload, latency),
            wire::OP_CLOSE => {
                return Err(format!(
                    "closed by the server: {}",
                    String::from_utf8_lossy(payload.get(2..).unwrap_or_default())
                ))
            }
            _ => {}
        }
        used += frame.payload.end;
    }
}
