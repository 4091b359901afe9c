//! Password hashing on a few dedicated threads, one per core.
//!
//! Each argon2 hash or check works in 19 MiB of memory. Each hashing thread keeps that memory
//! and reuses it (see `secrets.rs`), so the server holds at most one such buffer per core
//! however many logins arrive at once; the rest wait their turn in the queue. On tokio's
//! blocking pool, whose threads come and go by the hundred, every thread would keep its own:
//! 30 logins at once used to leave the server 550 MiB larger for good.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

pub struct Hashers {
    jobs: Sender<Job>,
}

impl Hashers {
    /// Starts one thread per core. They end when the `Hashers` is dropped.
    pub fn start() -> std::io::Result<Hashers> {
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("password-hash-{n}"))
                .spawn(move || work(&queue))?;
        }
        Ok(Hashers { jobs })
    }

    /// Runs `job` on a hashing thread; `None` if the threads are gone.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // Nobody waiting (the request went away) is fine.
            let _ = done.send(job());
        });
        self.jobs.send(job).ok()?;
        result.await.ok()
    }
}

/// A hashing thread's loop: one job at a time until the queue's sender is dropped. The queue's
/// lock is held only while waiting for a job, never while running one.
fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = match queue.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        job();
    }
}
