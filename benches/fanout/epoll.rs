//! The few epoll calls the load generator's readers make (`audience` and `floor`), as safe
//! functions over owned descriptors.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub use libc::epoll_event as Event;

/// A new, empty epoll set.
pub fn new_set() -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1 has no preconditions; a non-negative result is a new descriptor
    // that nothing else owns.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds `socket` to `set`, edge-triggered, for reading and the peer's hang-up; its events carry
/// `token`.
pub fn watch(set: &impl AsRawFd, socket: &impl AsRawFd, token: u64) -> io::Result<()> {
    let mut event = Event {
        events: (libc::EPOLLIN | libc::EPOLLET | libc::EPOLLRDHUP) as u32,
        u64: token,
    };
    // SAFETY: both descriptors are open for the duration of the call; `event` is valid.
    let added = unsafe {
        libc::epoll_ctl(
            set.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            socket.as_raw_fd(),
            &mut event,
        )
    };
    if added < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Fills the front of `events` with what is ready in `set`, waiting up to `timeout_ms` (-1:
/// until something is); returns how many. An interrupted wait returns 0.
pub fn wait(set: &impl AsRawFd, events: &mut [Event], timeout_ms: i32) -> io::Result<usize> {
    let room = i32::try_from(events.len()).unwrap_or(i32::MAX);
    // SAFETY: `events` has room for `room` entries.
    let n = unsafe { libc::epoll_wait(set.as_raw_fd(), events.as_mut_ptr(), room, timeout_ms) };
    if n < 0 {
        let error = io::Error::last_os_error();
        return match error.kind() {
            io::ErrorKind::Interrupted => Ok(0),
            _ => Err(error),
        };
    }
    Ok(n as usize)
}

/// Whether `event` says the peer hung up (after it, no further edge comes).
pub fn hung_up(event: &Event) -> bool {
    event.events & libc::EPOLLRDHUP as u32 != 0
}
