//! A queue bounded in bytes rather than in items: what waits for a slow consumer (a stream's
//! ffmpeg, a relay reader) is capped at a fixed size, however large each item is. A sender
//! that finds no room is told so at once and never waits: the caller drops the consumer.

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Sender<T> {
    items: mpsc::UnboundedSender<(T, OwnedSemaphorePermit)>,
    room: Arc<Semaphore>,
}

pub struct Receiver<T> {
    items: mpsc::UnboundedReceiver<(T, OwnedSemaphorePermit)>,
}

/// Why an item was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// More than the queue's bytes are waiting.
    Full,
    /// The receiver is gone.
    Closed,
}

/// A queue holding at most `bytes` bytes.
pub fn bounded<T: AsRef<[u8]>>(bytes: usize) -> (Sender<T>, Receiver<T>) {
    let (items, received) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS)));
    (Sender { items, room }, Receiver { items: received })
}

impl<T: AsRef<[u8]>> Sender<T> {
    pub fn send(&self, item: T) -> Result<(), Refused> {
        let size = u32::try_from(item.as_ref().len()).map_err(|_| Refused::Full)?;
        let permit = self
            .room
            .clone()
            .try_acquire_many_owned(size)
            .map_err(|_| Refused::Full)?;
        self.items.send((item, permit)).map_err(|_| Refused::Closed)
    }
}

impl<T> Receiver<T> {
    /// The next item, and its place in the queue: the bytes count as waiting until the
    /// permit is dropped (once the item is written out).
    pub async fn recv(&mut self) -> Option<(T, OwnedSemaphorePermit)> {
        self.items.recv().await
    }
}
