//! Child processes of the media plane (nginx, ffmpeg): they die with RoomManager, stop with a
//! signal and a deadline, and their error output is kept for the log.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

pub const SIGQUIT: i32 = libc::SIGQUIT;
pub const SIGTERM: i32 = libc::SIGTERM;

/// Asks the kernel to kill the child if RoomManager itself dies (even by SIGKILL), so no nginx
/// or ffmpeg is ever left behind.
pub fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
    // async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs the child at a lower CPU priority (nice 10): batch work such as re-encoding a
/// recording must not slow the live mixers and nginx.
pub fn low_priority(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls setpriority,
    // which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::setpriority(libc::PRIO_PROCESS, 0, 10) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends `signal`, waits up to `grace` for the child to exit, then kills it.
pub async fn stop(child: &mut Child, signal: i32, grace: Duration) {
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        // SAFETY: kill(2) with a pid of our own live child has no memory effects.
        unsafe {
            libc::kill(pid, signal);
        }
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// The end of what a finished child wrote to stderr (if it was piped), for the log.
pub async fn read_stderr(child: &mut Child) -> String {
    let Some(mut stderr) = child.stderr.take() else {
        return String::new();
    };
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), stderr.read_to_end(&mut bytes)).await;
    let text = String::from_utf8_lossy(&bytes);
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
}
