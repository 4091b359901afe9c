//! ffmpeg for the `rtmp` backend: turning recorded FLV into MP4, probing and joining recordings,
//! thumbnails, and
//! the co-stream mixer (host + guest in, one mixed stream out), supervised while the co-stream
//! lasts.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::process::{die_with_parent, low_priority, stop, SIGTERM};
use super::MixLayout;

/// Copies the streams of `input` into an MP4 with its index up front (playable while
/// downloading). Writes to a temporary name and renames, so `output` is whole or absent.
pub async fn remux(ffmpeg: &Path, input: &Path, output: &Path) -> Result<(), String> {
    let partial = output.with_extension("partial.mp4");
    let mut command = Command::new(ffmpeg);
    command
        .args(["-nostdin", "-y", "-loglevel", "error", "-i"])
        .arg(input)
        .args(["-c", "copy", "-movflags", "+faststart"])
        .arg(&partial);
    run(command).await?;
    tokio::fs::rename(&partial, output)
        .await
        .map_err(|e| format!("cannot move the MP4 into place: {e}"))
}

/// Joins MP4 segments (same codecs) into one file, without re-encoding.
pub async fn concat(ffmpeg: &Path, parts: &[PathBuf], output: &Path) -> Result<(), String> {
    let list = output.with_extension("txt");
    let text: String = parts
        .iter()
        .map(|p| {
            format!(
                "file '{}'\n",
                p.display().to_string().replace('\'', "'\\''")
            )
        })
        .collect();
    tokio::fs::write(&list, text)
        .await
        .map_err(|e| format!("cannot write the concat list: {e}"))?;
    let partial = output.with_extension("partial.mp4");
    let mut command = Command::new(ffmpeg);
    command
        .args([
            "-nostdin",
            "-y",
            "-loglevel",
            "error",
            "-f",
            "concat",
            "-safe",
            "0",
            "-i",
        ])
        .arg(&list)
        .args(["-c", "copy", "-movflags", "+faststart"])
        .arg(&partial);
    let result = run(command).await;
    let _ = tokio::fs::remove_file(&list).await;
    result?;
    tokio::fs::rename(&partial, output)
        .await
        .map_err(|e| format!("cannot move the MP4 into place: {e}"))
}

/// What a recording part holds, as ffprobe reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    pub duration: f64,
    /// The first video stream's frame size; `(0, 0)` without video.
    pub width: u32,
    pub height: u32,
    pub audio: bool,
}

/// Reads a media file's duration, frame size and whether it has sound.
pub async fn probe(ffprobe: &Path, file: &Path) -> Result<Probe, String> {
    let mut command = Command::new(ffprobe);
    command
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,width,height:format=duration",
            "-of",
            "json",
        ])
        .arg(file);
    let out = run(command).await?;
    let bad = || {
        format!(
            "ffprobe gave nothing usable for {}: {out:?}",
            file.display()
        )
    };
    let answer: serde_json::Value = serde_json::from_str(&out).map_err(|_| bad())?;
    let duration = answer["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse::<f64>().ok())
        .ok_or_else(bad)?;
    let streams = answer["streams"].as_array().cloned().unwrap_or_default();
    let video = streams.iter().find(|s| s["codec_type"] == "video");
    let size = |key: &str| {
        video
            .and_then(|v| v[key].as_u64())
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    };
    Ok(Probe {
        duration,
        width: size("width"),
        height: size("height"),
        audio: streams.iter().any(|s| s["codec_type"] == "audio"),
    })
}

/// A stretch of a file for a joined recording: `length` seconds from second `from`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    pub file: PathBuf,
    pub from: f64,
    pub length: f64,
}

/// Joins `cuts`, in order, into one MP4 of `width`x`height` (each picture scaled to fit and
/// centred on black), re-encoded with x264; with sound when `audio` (every cut has some).
pub async fn join_cuts(
    ffmpeg: &Path,
    cuts: &[Cut],
    (width, height): (u32, u32),
    audio: bool,
    output: &Path,
) -> Result<(), String> {
    let partial = output.with_extension("partial.mp4");
    let mut command = Command::new(ffmpeg);
    low_priority(&mut command);
    command.args(["-nostdin", "-y", "-loglevel", "error"]);
    let mut filter = String::new();
    let mut inputs = String::new();
    for (i, cut) in cuts.iter().enumerate() {
        // Seeking at the input decodes from the keyframe before and drops up to `from`.
        command
            .args(["-ss", &format!("{:.3}", cut.from)])
            .args(["-t", &format!("{:.3}", cut.length)])
            .arg("-i")
            .arg(&cut.file);
        filter.push_str(&format!(
            "[{i}:v]setpts=PTS-STARTPTS,scale={width}:{height}:force_original_aspect_ratio=decrease,\
             pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=30,format=yuv420p[v{i}];"
        ));
        inputs.push_str(&format!("[v{i}]"));
        if audio {
            filter.push_str(&format!(
                "[{i}:a]asetpts=PTS-STARTPTS,aresample=44100:async=1[a{i}];"
            ));
            inputs.push_str(&format!("[a{i}]"));
        }
    }
    let n = cuts.len();
    let a = u8::from(audio);
    filter.push_str(&format!("{inputs}concat=n={n}:v=1:a={a}[v]"));
    if audio {
        filter.push_str("[a]");
    }
    command
        .args(["-filter_complex", &filter, "-map", "[v]"])
        .args(if audio {
            &["-map", "[a]", "-c:a", "aac", "-b:a", "128k"][..]
        } else {
            &[]
        })
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "23",
            "-movflags",
            "+faststart",
        ])
        .arg(&partial);
    run(command).await?;
    tokio::fs::rename(&partial, output)
        .await
        .map_err(|e| format!("cannot move the MP4 into place: {e}"))
}

/// One frame of `video`, `at` seconds in, scaled to 320 pixels wide, as a JPEG at `output`
/// (whole or absent).
pub async fn thumbnail(ffmpeg: &Path, video: &Path, at: f64, output: &Path) -> Result<(), String> {
    let partial = output.with_extension("partial.jpg");
    let mut command = Command::new(ffmpeg);
    command
        .args([
            "-nostdin",
            "-y",
            "-loglevel",
            "error",
            "-ss",
            &format!("{at:.3}"),
            "-i",
        ])
        .arg(video)
        .args([
            "-frames:v",
            "1",
            "-vf",
            "scale=320:-2",
            "-q:v",
            "4",
            "-update",
            "1",
        ])
        .arg(&partial);
    run(command).await?;
    tokio::fs::rename(&partial, output)
        .await
        .map_err(|e| format!("cannot move the thumbnail into place: {e}"))
}

/// Runs a short ffmpeg/ffprobe job; returns its stdout, or its error output.
async fn run(mut command: Command) -> Result<String, String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    die_with_parent(&mut command);
    let out = command
        .output()
        .await
        .map_err(|e| format!("cannot run {:?}: {e}", command.as_std().get_program()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(format!("{} ({})", stderr.trim(), out.status))
    }
}

/// How long the mixer probes each input for its streams, in microseconds. nginx-rtmp hands a new
/// reader a publisher's video from its next keyframe on (it keeps no GOP cache), so this must
/// outlast the longest keyframe interval publishers use (OBS is often set to 5 s or more, up to
/// 10 s): probing for less ends with the audio alone, and the mix "matches no streams". It is
/// a ceiling, not a wait: the probe ends as soon as both an input's streams have arrived.
const MIX_PROBE_MICROS: &str = "12000000";
/// An input that delivers nothing for this long (microseconds) ends the mixer; longer than the
/// probe, so a publisher without sound that waits for its next keyframe is not taken for dead.
const MIX_READ_TIMEOUT_MICROS: &str = "15000000";
/// The first wait before the mixer is started again after it exited, and the wait while an input
/// is not there yet (see [`inputs_not_ready`]), which never grows.
const MIX_RETRY_FIRST: Duration = Duration::from_millis(500);
/// The wait before a start, after the mixer exited while its inputs were not there yet.
const MIX_RETRY_NOT_READY: Duration = Duration::from_secs(1);
/// The longest wait between starts after other failures (doubling from [`MIX_RETRY_FIRST`]).
const MIX_RETRY_MAX: Duration = Duration::from_secs(8);

/// Where a mixer reads and writes.
#[derive(Debug, Clone)]
pub struct MixJob {
    pub ffmpeg: PathBuf,
    pub host_url: String,
    pub guest_url: String,
    pub output_url: String,
}

/// The ffmpeg arguments of a mixer for `layout`: side by side is 1280x360 (two 640x360
/// pictures); picture-in-picture is the host at 1280x720 with the guest at a quarter size in
/// the lower right corner. Audio is both voices mixed.
pub fn mix_args(job: &MixJob, layout: MixLayout) -> Vec<String> {
    let input = |url: &str| {
        [
            "-fpsprobesize",
            "0",
            "-analyzeduration",
            MIX_PROBE_MICROS,
            "-rw_timeout",
            MIX_READ_TIMEOUT_MICROS,
            "-i",
            url,
        ]
        .map(str::to_owned)
    };
    let video = match layout {
        MixLayout::SideBySide => {
            "[0:v]scale=640:360,setsar=1,fps=30[h];[1:v]scale=640:360,setsar=1,fps=30[g];\
             [h][g]hstack=inputs=2:shortest=1[v]"
        }
        MixLayout::PictureInPicture => {
            "[0:v]scale=1280:720,setsar=1,fps=30[h];[1:v]scale=320:180,setsar=1,fps=30[g];\
             [h][g]overlay=W-w-24:H-h-24:shortest=1[v]"
        }
    };
    let filter = format!(
        "{video};[0:a]aresample=44100:async=1[ha];[1:a]aresample=44100:async=1[ga];\
         [ha][ga]amix=inputs=2:duration=shortest:dropout_transition=0:normalize=0[a]"
    );
    let mut args: Vec<String> = ["-nostdin", "-loglevel", "error"]
        .map(str::to_owned)
        .to_vec();
    args.extend(input(&job.host_url));
    args.extend(input(&job.guest_url));
    args.extend(
        [
            "-filter_complex",
            &filter,
            "-map",
            "[v]",
            "-map",
            "[a]",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-f",
            "flv",
            &job.output_url,
        ]
        .map(str::to_owned),
    );
    args
}

/// Runs the mixer until `stop` is cancelled, restarting it whenever it exits, and again at once
/// when the layout changes. While an input is not there yet (the guest not pushing yet, or a
/// publisher's video still before its first keyframe) it is tried every second; after other
/// failures (a publisher reconnecting, a crash) the wait doubles up to 8 s.
pub async fn supervise_mixer(
    job: MixJob,
    mut layout: watch::Receiver<MixLayout>,
    stop_mixing: CancellationToken,
) {
    let mut pause = MIX_RETRY_FIRST;
    loop {
        let current = *layout.borrow_and_update();
        let mut command = Command::new(&job.ffmpeg);
        command
            .args(mix_args(&job, current))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let started = std::time::Instant::now();
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the ffmpeg mixer");
                tokio::select! {
                    () = stop_mixing.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(5)) => continue,
                }
            }
        };
        let output = job
            .output_url
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        tracing::info!(%output, layout = ?current, "mixer started");
        // Drained as it comes, so a chatty ffmpeg never blocks on a full pipe.
        let errors = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(last_lines(stderr)));
        tokio::select! {
            status = child.wait() => {
                let stderr = match errors {
                    Some(task) => task.await.unwrap_or_default(),
                    None => String::new(),
                };
                let not_ready = inputs_not_ready(&stderr);
                if started.elapsed() > Duration::from_secs(20) {
                    pause = MIX_RETRY_FIRST;
                }
                let wait = if not_ready { MIX_RETRY_NOT_READY } else { pause };
                let retry_ms = wait.as_millis() as u64;
                if not_ready {
                    tracing::info!(?status, stderr = %stderr, retry_ms, "mixer inputs not there yet; restarting");
                } else {
                    tracing::warn!(?status, stderr = %stderr, retry_ms, "mixer exited; restarting");
                    pause = (pause * 2).min(MIX_RETRY_MAX);
                }
                tokio::select! {
                    () = stop_mixing.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
            changed = layout.changed() => {
                stop(&mut child, SIGTERM, Duration::from_secs(2)).await;
                if changed.is_err() {
                    return;
                }
                pause = MIX_RETRY_FIRST;
            }
            () = stop_mixing.cancelled() => {
                stop(&mut child, SIGTERM, Duration::from_secs(2)).await;
                tracing::info!(%output, "mixer stopped");
                return;
            }
        }
    }
}

/// Whether the mixer's last words say an input is not there yet rather than broken: nginx-rtmp
/// refuses to play a stream nobody publishes yet ("No such stream", with `idle_streams off`),
/// as the builtin backend's relay does ("404 Not Found"), and an input whose video did not
/// arrive within the probe leaves the filter graph's `[N:v]` matching no stream. Each comes
/// right by itself once the publisher sends.
fn inputs_not_ready(stderr: &str) -> bool {
    ["matches no streams", "No such stream", "404 Not Found"]
        .iter()
        .any(|said| stderr.contains(said))
}

/// Reads a child's stderr to the end; keeps the last few lines for the log.
async fn last_lines(stderr: tokio::process::ChildStderr) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut last = std::collections::VecDeque::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if last.len() == 5 {
            last.pop_front();
        }
        last.push_back(line);
    }
    Vec::from(last).join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_by_side_stacks_two_pictures_and_mixes_both_voices() {
        let job = MixJob {
            ffmpeg: "ffmpeg".into(),
            host_url: "rtmp://127.0.0.1/live/h".into(),
            guest_url: "rtmp://127.0.0.1/live/g".into(),
            output_url: "rtmp://127.0.0.1/mix/m?code=c".into(),
        };
        let args = mix_args(&job, MixLayout::SideBySide).join(" ");
        assert!(args.contains("hstack=inputs=2"), "{args}");
        assert!(args.contains("amix=inputs=2"), "{args}");
        assert!(args.ends_with("rtmp://127.0.0.1/mix/m?code=c"), "{args}");
        let pip = mix_args(&job, MixLayout::PictureInPicture).join(" ");
        assert!(pip.contains("overlay="), "{pip}");
    }

    #[test]
    fn a_missing_input_is_told_from_a_broken_one() {
        assert!(inputs_not_ready(
            "Stream specifier ':v' in filtergraph description [0:v]scale=640:360 matches no streams."
        ));
        assert!(inputs_not_ready(
            "Server error: No such stream | rtmp://127.0.0.1:1935/guest/g: Operation not permitted"
        ));
        assert!(inputs_not_ready(
            "http://127.0.0.1:40000/guest/g.flv: Server returned 404 Not Found"
        ));
        assert!(!inputs_not_ready(
            "rtmp://127.0.0.1:1935/live/h: Connection refused"
        ));
    }
}
