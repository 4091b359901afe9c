//! nginx with the RTMP module, for the `rtmp` backend: the config RoomManager writes for it,
//! and the supervisor that runs it as a child when `media.rtmp.manage_nginx` is on.
//!
//! Every path in the config is absolute and inside the data dir; the callbacks go to
//! RoomManager on loopback; the control endpoint listens on loopback only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::config::RtmpConfig;

/// The folders the media plane uses under the data dir.
#[derive(Debug, Clone)]
pub struct MediaPaths {
    /// nginx's prefix: `conf/`, `logs/`, `tmp/`.
    pub nginx: PathBuf,
    /// HLS output, `hls/live/<name>/index.m3u8` and `hls/mix/<name>/…`.
    pub hls: PathBuf,
    /// FLV files as nginx records them, waiting to become MP4.
    pub flv: PathBuf,
    /// Finished MP4 recordings: parts `records/<live id>/<unix time>.mp4` (host and mixed
    /// streams), and the sessions' recordings joined from them, `records/<host live id>/
    /// session_<start>.mp4` with a `.jpg` thumbnail.
    pub records: PathBuf,
}

impl MediaPaths {
    pub fn new(data_dir: &Path) -> std::io::Result<MediaPaths> {
        let data_dir = std::path::absolute(data_dir)?;
        let media = data_dir.join("media");
        let paths = MediaPaths {
            nginx: data_dir.join("nginx"),
            hls: media.join("hls"),
            flv: media.join("flv"),
            records: media.join("records"),
        };
        for dir in [
            paths.nginx.join("conf"),
            paths.nginx.join("logs"),
            paths.nginx.join("tmp"),
            paths.hls.join("live"),
            paths.hls.join("mix"),
            paths.flv.clone(),
            paths.records.clone(),
        ] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(paths)
    }

    pub fn config_file(&self) -> PathBuf {
        self.nginx.join("conf").join("nginx.conf")
    }

    /// The secret nginx's callbacks carry, generated at first start when none is configured.
    pub fn hook_secret_file(&self) -> PathBuf {
        self.nginx.join("conf").join("hook.secret")
    }
}

/// The loopback address at which nginx reaches RoomManager's hooks.
pub fn hooks_address(http: SocketAddr) -> SocketAddr {
    if http.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], http.port()))
    } else {
        http
    }
}

/// The nginx config for RoomManager at `http` (its HTTP listener); every callback carries
/// `hook_secret`.
pub fn config_text(
    config: &RtmpConfig,
    paths: &MediaPaths,
    http: SocketAddr,
    hook_secret: &str,
    as_root: bool,
) -> String {
    let hooks = format!("http://{}/hooks/rtmp", hooks_address(http));
    let secret = format!("?secret={hook_secret}");
    let user = if as_root { "user root;\n" } else { "" };
    let prefix = paths.nginx.display();
    let hls = paths.hls.display();
    let flv = paths.flv.display();
    format!(
        "# Written by RoomManager; regenerated at every start. `roommanager nginx-config` prints it.
load_module {module};
{user}daemon off;
# One process, no master: it is RoomManager's direct child and dies with it (a master's workers
# would outlive a killed master and keep holding the RTMP port).
master_process off;
pid {prefix}/logs/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}

rtmp {{
    access_log {prefix}/logs/rtmp_access.log;
    server {{
        listen {rtmp_listen};
        chunk_size 4096;
        notify_method post;
        # Hosts publish here; every publish is authorised by RoomManager.
        application live {{
            live on;
            idle_streams off;
            on_publish {hooks}/on_publish{secret};
            on_publish_done {hooks}/on_publish_done{secret};
            on_record_done {hooks}/on_record_done{secret};
            hls on;
            hls_path {hls}/live;
            hls_nested on;
            hls_fragment {fragment}s;
            hls_playlist_length {playlist}s;
            record all;
            record_path {flv};
            record_unique on;
        }}
        # Co-stream guests publish here: only the mixer reads it (no HLS, not recorded).
        application guest {{
            live on;
            idle_streams off;
            on_publish {hooks}/on_publish{secret};
            on_publish_done {hooks}/on_publish_done{secret};
        }}
        # The co-stream mixer publishes the mixed picture here. Recorded too: a session's
        # recording shows the mix where viewers watched it.
        application mix {{
            live on;
            idle_streams off;
            on_publish {hooks}/on_publish{secret};
            on_publish_done {hooks}/on_publish_done{secret};
            on_record_done {hooks}/on_record_done{secret};
            record all;
            record_path {flv};
            record_unique on;
            hls on;
            hls_path {hls}/mix;
            hls_nested on;
            hls_fragment {fragment}s;
            hls_playlist_length {playlist}s;
        }}
    }}
}}

http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    # Only RoomManager, on this machine, drops publishers through here.
    server {{
        listen 127.0.0.1:{control_port};
        location /control {{ rtmp_control all; }}
    }}
}}
",
        module = config.rtmp_module.display(),
        rtmp_listen = config.rtmp_listen,
        fragment = config.hls_fragment_secs,
        playlist = config.hls_playlist_secs,
        control_port = config.control_port,
    )
}

/// Whether the nginx binary and the RTMP module are there; the problem otherwise.
pub fn check(config: &RtmpConfig) -> Result<(), String> {
    if which(&config.nginx_binary).is_none() {
        return Err(format!(
            "nginx was not found ({}); install it (Debian: apt-get install nginx libnginx-mod-rtmp)",
            config.nginx_binary.display()
        ));
    }
    if !config.rtmp_module.exists() {
        return Err(format!(
            "the nginx RTMP module was not found at {} (Debian: apt-get install libnginx-mod-rtmp)",
            config.rtmp_module.display()
        ));
    }
    Ok(())
}

/// Finds a program: a path as given, or a name on PATH.
pub fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_owned());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

/// Runs nginx in the foreground until `shutdown`, restarting it (with back-off) if it dies;
/// `exited` is called each time it died, before it is started again (its publishes are gone,
/// without their callbacks). On shutdown nginx gets SIGQUIT (finish and exit) and, after a
/// few seconds, SIGKILL.
pub async fn supervise(
    binary: PathBuf,
    paths: MediaPaths,
    shutdown: CancellationToken,
    exited: impl Fn(),
) {
    let mut pause = Duration::from_millis(500);
    loop {
        let mut command = Command::new(&binary);
        command
            .arg("-p")
            .arg(&paths.nginx)
            .arg("-c")
            .arg(paths.config_file())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        super::process::die_with_parent(&mut command);
        let started = std::time::Instant::now();
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(error = %e, "cannot start nginx");
                if sleep_or_stop(&shutdown, Duration::from_secs(10)).await {
                    return;
                }
                continue;
            }
        };
        tracing::info!(pid = child.id(), "nginx started");
        tokio::select! {
            status = child.wait() => {
                let stderr = super::process::read_stderr(&mut child).await;
                tracing::error!(?status, stderr = %stderr.trim(), "nginx stopped unexpectedly; restarting");
                exited();
                if started.elapsed() > Duration::from_secs(30) {
                    pause = Duration::from_millis(500);
                }
                if sleep_or_stop(&shutdown, pause).await {
                    return;
                }
                pause = (pause * 2).min(Duration::from_secs(30));
            }
            () = shutdown.cancelled() => {
                super::process::stop(&mut child, super::process::SIGQUIT, Duration::from_secs(5)).await;
                tracing::info!("nginx stopped");
                return;
            }
        }
    }
}

/// Sleeps, unless shutdown comes first; `true` means stop.
async fn sleep_or_stop(shutdown: &CancellationToken, pause: Duration) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(pause) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_keeps_every_path_in_the_data_dir_and_control_on_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let paths = MediaPaths::new(dir.path()).unwrap();
        let text = config_text(
            &RtmpConfig::default(),
            &paths,
            "0.0.0.0:8080".parse().unwrap(),
            "s3cret",
            false,
        );
        assert!(
            text.contains("on_publish http://127.0.0.1:8080/hooks/rtmp/on_publish?secret=s3cret;")
        );
        assert!(text.contains("listen 127.0.0.1:8936;"));
        assert!(!text.contains("user root"));
        let root = dir.path().to_str().unwrap();
        for line in text
            .lines()
            .filter(|l| l.contains("_path ") || l.contains("pid "))
        {
            assert!(line.contains(root), "path outside the data dir: {line}");
        }
    }
}
