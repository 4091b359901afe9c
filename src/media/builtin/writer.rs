//! The ffmpeg of one published stream: it reads the push as FLV on stdin and copies it, without
//! re-encoding, into the stream's live HLS (as nginx writes it: the same folder, fragment and
//! playlist lengths, segments named `N.ts`) and its FLV recording (where nginx records, named as
//! nginx names files). What waits for it is bounded: a stream whose ffmpeg falls
//! `media.builtin.queue_bytes` behind drops its publisher rather than buffer more.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::task::JoinHandle;

use super::queue::{self, Refused};

use crate::config::RtmpConfig;
use crate::media::nginx::MediaPaths;
use crate::media::process;

/// How long a finished push's ffmpeg may take to take what is still queued, write its last
/// segment and close its files once its input ended; then it is killed (the FLV survives that).
const FINISH_GRACE: Duration = Duration::from_secs(10);

/// Where one publish goes.
pub struct Target<'a> {
    /// `live` or `mix`: the HLS folder, as nginx's applications.
    pub app: &'a str,
    pub stream: &'a str,
    /// The recording's name stamp (unix seconds), unique for the stream.
    pub stamp: u64,
}

/// The running ffmpeg of a publish: what is sent to it, and the task that feeds it.
pub struct Writer {
    feed: queue::Sender<Arc<[u8]>>,
    done: JoinHandle<()>,
    /// The recording it writes.
    flv: PathBuf,
}

/// The writer's ffmpeg stopped taking input (it exited), or fell too far behind.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("ffmpeg cannot be started: {0}")]
    Start(std::io::Error),
    #[error("ffmpeg fell more than media.builtin.queue_bytes behind")]
    Behind,
    #[error("ffmpeg stopped")]
    Stopped,
}

impl Writer {
    pub fn start(
        config: &RtmpConfig,
        paths: &MediaPaths,
        target: &Target<'_>,
        queue_bytes: usize,
    ) -> Result<Writer, WriterError> {
        let hls = paths.hls.join(target.app).join(target.stream);
        std::fs::create_dir_all(&hls).map_err(WriterError::Start)?;
        let flv = paths
            .flv
            .join(format!("{}-{}.flv", target.stream, target.stamp));
        let list_size = (config.hls_playlist_secs / config.hls_fragment_secs).max(1);
        // `omit_endlist`: a publisher who drops and reconnects continues the same playlist
        // (`append_list`), and players keep waiting meanwhile. `onfail=ignore`: a recording
        // that cannot be written never stops the live.
        let outputs = format!(
            "[f=hls:hls_time={fragment}:hls_list_size={list_size}:\
             hls_flags=delete_segments+omit_endlist+append_list+discont_start:\
             hls_segment_filename={segments}]{playlist}|[f=flv:onfail=ignore]{flv}",
            fragment = config.hls_fragment_secs,
            segments = tee_escape(&hls.join("%d.ts")),
            playlist = tee_escape(&hls.join("index.m3u8")),
            flv = tee_escape(&flv),
        );
        let mut command = Command::new(&config.ffmpeg_binary);
        command
            .args([
                "-nostdin",
                "-loglevel",
                "error",
                "-analyzeduration",
                "1000000",
            ])
            .args(["-f", "flv", "-i", "pipe:0", "-map", "0", "-c", "copy"])
            .args(["-f", "tee"])
            .arg(outputs)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        process::die_with_parent(&mut command);
        let mut child = command.spawn().map_err(WriterError::Start)?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| WriterError::Start(std::io::Error::other("no stdin")))?;
        let (feed, mut queued) = queue::bounded::<Arc<[u8]>>(queue_bytes);
        let stream = target.stream.to_owned();
        let done = tokio::spawn(async move {
            while let Some((bytes, _permit)) = queued.recv().await {
                if stdin.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            // End of input: ffmpeg writes its last segment and closes the recording.
            drop(stdin);
            drop(queued);
            match child.wait().await {
                Ok(status) if status.success() => {}
                status => {
                    let stderr = process::read_stderr(&mut child).await;
                    tracing::warn!(stream, ?status, stderr = %stderr.trim(), "a push's ffmpeg failed");
                }
            }
        });
        Ok(Writer { feed, done, flv })
    }

    /// Queues `bytes` for ffmpeg, unless it is too far behind or gone.
    pub fn send(&self, bytes: Arc<[u8]>) -> Result<(), WriterError> {
        self.feed.send(bytes).map_err(|refused| match refused {
            Refused::Full => WriterError::Behind,
            Refused::Closed => WriterError::Stopped,
        })
    }

    /// Ends the input and waits for ffmpeg to finish (at most [`FINISH_GRACE`], then it is
    /// killed): the recording it wrote.
    pub async fn finish(self) -> PathBuf {
        drop(self.feed);
        let mut done = self.done;
        if tokio::time::timeout(FINISH_GRACE, &mut done).await.is_err() {
            tracing::warn!(flv = %self.flv.display(), "a push's ffmpeg did not finish in time; killed");
            // Dropping the task drops the child, which kills it (`kill_on_drop`).
            done.abort();
            let _ = done.await;
        }
        self.flv
    }
}

/// A path as one of the tee muxer's outputs or option values: its separators escaped.
fn tee_escape(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, '\\' | '\'' | ':' | '|' | '[' | ']' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
