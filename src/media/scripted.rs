//! A scripted, in-process media plane for tests: it answers every call at once with plausible
//! values, unless told to fail, hang or answer slowly for the next calls of a kind. It records
//! every call, so a test can check what the rooms asked and in which order.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use async_trait::async_trait;

use super::{
    LiveCode, LiveId, MediaError, MediaPlane, MixLayout, MixSpec, Recording, SessionMedia,
    StreamCredentials, StreamStatus,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    NewStream,
    StartDistribution,
    StopDistribution,
    CheckStream,
    Recording,
    RemoveRecording,
    StartMix,
    UpdateMix,
    CloseMix,
}

/// What the next call of a kind does.
#[derive(Debug, Clone)]
pub enum Behaviour {
    Succeed,
    Fail(MediaError),
    /// Never answers (the caller's timeout must fire).
    Hang,
    /// Answers successfully after a pause.
    Slow(Duration),
    /// Waits until the test opens the gate, then answers successfully: the test decides when,
    /// so the order of events does not depend on how fast the machine is.
    Gated(Gate),
}

/// A gate a scripted call waits at; the test sees the call arrive and lets it through.
#[derive(Debug, Clone)]
pub struct Gate {
    arrived: Arc<Semaphore>,
    opened: Arc<Semaphore>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            arrived: Arc::new(Semaphore::new(0)),
            opened: Arc::new(Semaphore::new(0)),
        }
    }
}

impl Gate {
    /// Waits until a call is waiting at the gate.
    pub async fn arrived(&self) {
        self.arrived
            .acquire()
            .await
            .expect("the gate's semaphores are never closed")
            .forget();
    }

    /// Lets one waiting (or the next) call through.
    pub fn open(&self) {
        self.opened.add_permits(1);
    }

    async fn pass(&self) {
        self.arrived.add_permits(1);
        self.opened
            .acquire()
            .await
            .expect("the gate's semaphores are never closed")
            .forget();
    }
}

#[derive(Default)]
pub struct ScriptedMedia {
    /// std mutexes: held only for a queue or log update, never across an `.await`.
    scripts: Mutex<HashMap<Call, VecDeque<Behaviour>>>,
    log: Mutex<Vec<(Call, String)>>,
    /// What every `recording` call asked for, in order.
    asked: Mutex<Vec<SessionMedia>>,
    next: AtomicU64,
}

impl ScriptedMedia {
    /// Makes the next calls of `call` behave as listed, in order; later calls succeed.
    pub fn script(&self, call: Call, behaviours: impl IntoIterator<Item = Behaviour>) {
        let mut scripts = self.scripts.lock().unwrap_or_else(|p| p.into_inner());
        scripts.entry(call).or_default().extend(behaviours);
    }

    /// Every call so far, with its main argument.
    pub fn calls(&self) -> Vec<(Call, String)> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The sessions `recording` was asked for so far (windows included), in order.
    pub fn recordings_asked(&self) -> Vec<SessionMedia> {
        self.asked.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn count(&self, call: Call) -> usize {
        self.calls().iter().filter(|(c, _)| *c == call).count()
    }

    async fn enter(&self, call: Call, argument: String) -> Result<(), MediaError> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((call, argument));
        let behaviour = self
            .scripts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&call)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Behaviour::Succeed);
        match behaviour {
            Behaviour::Succeed => Ok(()),
            Behaviour::Fail(e) => Err(e),
            Behaviour::Hang => std::future::pending().await,
            Behaviour::Slow(pause) => {
                tokio::time::sleep(pause).await;
                Ok(())
            }
            Behaviour::Gated(gate) => {
                gate.pass().await;
                Ok(())
            }
        }
    }
}

#[async_trait]
impl MediaPlane for ScriptedMedia {
    async fn new_stream(&self, room: u64, purpose: &str) -> Result<StreamCredentials, MediaError> {
        self.enter(Call::NewStream, format!("{room}/{purpose}"))
            .await?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let live_id = LiveId(format!("r{room}-{purpose}-{n}"));
        let live_code = LiveCode(format!("code{n}"));
        Ok(StreamCredentials {
            push_url: format!("rtmp://scripted/live/{}?code={}", live_id.0, live_code.0),
            live_id,
            live_code,
            recording_tag: None,
        })
    }

    async fn start_distribution(&self, live: &LiveId) -> Result<String, MediaError> {
        self.enter(Call::StartDistribution, live.0.clone()).await?;
        Ok(format!("http://scripted/hls/{live}/index.m3u8"))
    }

    async fn stop_distribution(&self, live: &LiveId) -> Result<(), MediaError> {
        self.enter(Call::StopDistribution, live.0.clone()).await
    }

    async fn check_stream(&self, live: &LiveId) -> Result<StreamStatus, MediaError> {
        self.enter(Call::CheckStream, live.0.clone()).await?;
        Ok(StreamStatus::OnAir)
    }

    async fn recording(&self, session: &SessionMedia) -> Result<Option<Recording>, MediaError> {
        let live = &session.host;
        self.asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(session.clone());
        self.enter(Call::Recording, live.0.clone()).await?;
        Ok(Some(Recording {
            url: format!("http://scripted/records/{live}-{}.mp4", session.started_at),
            duration_secs: 0,
            thumbnail_url: None,
        }))
    }

    async fn remove_recording(
        &self,
        stream: &LiveId,
        mixes: &[LiveId],
        recording: &Recording,
    ) -> Result<(), MediaError> {
        let streams: Vec<&str> = std::iter::once(stream)
            .chain(mixes)
            .map(|l| l.0.as_str())
            .collect();
        let argument = format!("{}:{}", streams.join("+"), recording.url);
        self.enter(Call::RemoveRecording, argument).await
    }

    async fn start_mix(&self, spec: &MixSpec) -> Result<(), MediaError> {
        let argument = format!("{}+{}={}", spec.host, spec.guest, spec.mixed);
        self.enter(Call::StartMix, argument).await
    }

    async fn update_mix(&self, mixed: &LiveId, layout: MixLayout) -> Result<(), MediaError> {
        self.enter(Call::UpdateMix, format!("{mixed}:{layout:?}"))
            .await
    }

    async fn close_mix(&self, mixed: &LiveId) -> Result<(), MediaError> {
        self.enter(Call::CloseMix, mixed.0.clone()).await
    }
}
