//! The test harness: the real server, in-process on an ephemeral port ([`TestServer`]) or as the
//! real binary in a child process ([`Process`]), each with its own temporary data dir.

#![allow(dead_code)] // each test module uses a different part of the harness

pub mod smtp;
pub mod tools;
pub mod webdriver;
pub mod ws;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use roommanager::app::App;
use roommanager::config::{Config, MediaBackend};
use roommanager::media::MediaPlane;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const BIN: &str = env!("CARGO_BIN_EXE_roommanager");

/// The real router and store, served in this test's runtime on 127.0.0.1:0.
pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub data: tempfile::TempDir,
    app: Option<Arc<App>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the built-in defaults, changed by `adjust`. `server.public_url` stays empty
    /// (the default): every URL comes from the request, as on a LAN install.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_in(tempfile::tempdir().expect("temp dir"), adjust).await
    }

    /// Like [`TestServer::start_with`], listening on `bind` (e.g. `[::]:0`, a dual-stack
    /// socket that sees IPv4 clients as `::ffff:a.b.c.d`). `base` names 127.0.0.1 when `bind`
    /// is unspecified.
    pub async fn start_bound(bind: &str, adjust: impl FnOnce(&mut Config)) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        Self::start_full(data, None, bind, adjust).await
    }

    /// Like [`TestServer::start_with`], on an existing data dir (e.g. one kept by
    /// [`TestServer::stop_keep_data`]), as a restart would.
    pub async fn start_in(data: tempfile::TempDir, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_full(data, None, "127.0.0.1:0", adjust).await
    }

    /// Like [`TestServer::start_in`], listening on `bind` (e.g. `0.0.0.0:0`, to be reached by
    /// several loopback addresses, or `[::]:0`).
    pub async fn start_bound_in(
        bind: &str,
        data: tempfile::TempDir,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        Self::start_full(data, None, bind, adjust).await
    }

    /// Like [`TestServer::start_with`], with the given media plane instead of the default.
    pub async fn start_with_media(
        media: Arc<dyn MediaPlane>,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        Self::start_full(data, Some(media), "127.0.0.1:0", adjust).await
    }

    /// Like [`TestServer::start_in`], with the given media plane instead of the default.
    pub async fn start_in_with_media(
        data: tempfile::TempDir,
        media: Arc<dyn MediaPlane>,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        Self::start_full(data, Some(media), "127.0.0.1:0", adjust).await
    }

    /// Like [`TestServer::start_in_with_media`], listening on `bind` (e.g. the address a
    /// stopped server had, so that open pages reconnect to the new one).
    pub async fn start_bound_in_with_media(
        bind: &str,
        data: tempfile::TempDir,
        media: Arc<dyn MediaPlane>,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        Self::start_full(data, Some(media), bind, adjust).await
    }

    async fn start_full(
        data: tempfile::TempDir,
        media: Option<Arc<dyn MediaPlane>>,
        bind: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let listener = TcpListener::bind(bind).await.expect("bind");
        let mut reach = listener.local_addr().expect("local addr");
        if reach.ip().is_unspecified() {
            reach.set_ip([127, 0, 0, 1].into());
        }
        let base = format!("http://{reach}");
        let mut config = Config::default();
        config.storage.data_dir = data.path().to_owned();
        config.server.shutdown_grace_secs = 2;
        // The rtmp backend without nginx, as before `builtin` became the default: what the
        // tests that do not choose a backend test. Tests that want real video turn nginx on
        // (or choose `builtin`); the others must not start one each.
        config.media.backend = MediaBackend::Rtmp;
        config.media.rtmp.manage_nginx = false;
        config.media.rtmp.rtmp_listen = ([127, 0, 0, 1], spare_port()).into();
        config.media.rtmp.control_port = spare_port();
        adjust(&mut config);
        config.validate().expect("test config is valid");
        let addr = listener.local_addr().expect("local addr");
        let app = open_app(config, addr, media).await;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(roommanager::server::serve(listener, app.clone(), async {
            let _ = stopped.await;
        }));
        TestServer {
            base,
            client: reqwest::Client::new(),
            data,
            app: Some(app),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The running app, to look into the store the way an admin would.
    pub fn app(&self) -> &Arc<App> {
        self.app.as_ref().expect("the server is running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// Stops serving and closes the store, as the binary does on SIGTERM.
    pub async fn stop(self) {
        self.stop_keep_data().await;
    }

    /// Stops like [`TestServer::stop`] and hands back the data dir, for a restart with
    /// [`TestServer::start_in`].
    pub async fn stop_keep_data(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
        if let Some(app) = self.app.take() {
            app.close().await;
        }
        std::mem::replace(&mut self.data, tempfile::tempdir().expect("temp dir"))
    }
}

/// Opens the app; a store still held by a just-stopped server (whose last handles are being
/// dropped) gets a few seconds to be released.
async fn open_app(
    config: Config,
    addr: std::net::SocketAddr,
    media: Option<Arc<dyn MediaPlane>>,
) -> Arc<App> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let opened = match &media {
            Some(media) => App::open_with_media(config.clone(), addr, media.clone()),
            None => App::open(config.clone(), addr),
        };
        match opened {
            Ok(app) => return app,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("store does not open: {e}"),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The real `roommanager` binary running as a child process.
pub struct Process {
    child: Child,
    pub base: String,
    lines: mpsc::Receiver<String>,
    /// Everything the process wrote to stderr so far, for assertions and failure messages.
    pub log: Vec<String>,
    /// Holds the config file for as long as the process runs.
    _config: tempfile::TempDir,
}

impl Process {
    /// Starts `roommanager serve` on 127.0.0.1:0 with `data_dir` and a config file holding
    /// `config` (TOML), and waits until it says where it listens. Unless `config` has a
    /// `[media]` table of its own, the backend is `rtmp` (as in [`TestServer`]); unless it has
    /// a `[media.rtmp]` table, nginx is not started: a test never takes the default RTMP and
    /// control ports of the machine.
    pub fn serve(data_dir: &Path, config: &str) -> Process {
        Self::serve_with_env(data_dir, config, &[])
    }

    /// Like [`Process::serve`], with environment variables set (`Some`) or removed (`None`)
    /// for the child alone (e.g. `SSL_CERT_FILE`, which would change every test if set here).
    pub fn serve_with_env(
        data_dir: &Path,
        config: &str,
        env: &[(&str, Option<&std::ffi::OsStr>)],
    ) -> Process {
        let config_dir = tempfile::tempdir().expect("temp dir");
        let mut text = config.to_owned();
        if !text.contains("[media]") {
            text.push_str("\n[media]\nbackend = \"rtmp\"\n");
        }
        if !text.contains("[media.rtmp]") {
            text.push_str("\n[media.rtmp]\nmanage_nginx = false\n");
        }
        let config_file = write_file(config_dir.path(), "roommanager.toml", &text);
        let mut cmd = Command::new(BIN);
        cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--config")
            .arg(&config_file)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            match value {
                Some(value) => cmd.env(name, value),
                None => cmd.env_remove(name),
            };
        }
        let mut child = cmd.spawn().expect("spawn roommanager");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = Process {
            child,
            base: String::new(),
            lines,
            log: Vec::new(),
            _config: config_dir,
        };
        let ready = process
            .wait_for_line("listening on http://")
            .unwrap_or_else(|| panic!("server did not start; log:\n{}", process.log.join("\n")));
        let addr = ready
            .split("listening on http://")
            .nth(1)
            .expect("address after marker")
            .trim();
        process.base = format!("http://{addr}");
        process
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads stderr until a line contains `needle` (or the process ends, or 60 s pass).
    pub fn wait_for_line(&mut self, needle: &str) -> Option<String> {
        self.wait_for_all(&[needle])
    }

    /// Reads stderr until a line contains every one of `needles` (or the process ends, or
    /// 60 s pass).
    pub fn wait_for_all(&mut self, needles: &[&str]) -> Option<String> {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if needles.iter().all(|n| line.contains(n)) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Like [`Process::wait_for_all`], failing the test with the log when no such line comes.
    pub fn expect_log(&mut self, needles: &[&str]) -> String {
        self.wait_for_all(needles).unwrap_or_else(|| {
            panic!(
                "no log line with {needles:?}; log:\n{}",
                self.log.join("\n")
            )
        })
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Waits for the process to exit, at most `limit`; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.log.push(line);
                }
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on 127.0.0.1 for a server that binds it later (nginx's RTMP and control ports,
/// which must be known before nginx starts). It is taken from just below the kernel's ephemeral
/// range, where no outgoing connection or port-0 bind is ever given a port, so nothing on the
/// machine takes it between this check and the bind; each call in this process gets another.
pub fn spare_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const SPAN: u32 = 8000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let low = ephemeral_low.saturating_sub(SPAN).max(1024);
    // Test binaries running side by side start at different places.
    let start = std::process::id().wrapping_mul(2654435761) % SPAN;
    for _ in 0..SPAN {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let port = u16::try_from(low + offset).expect("below the ephemeral range, so < 65536");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

/// Polls `check` until it yields a value, for at most 20 s.
pub async fn wait_for<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never met"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the binary to completion with `args` in `cwd`; returns (status, stdout, stderr).
pub fn run_command(cwd: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    run_command_with_input(cwd, args, None)
}

/// Like [`run_command`], with `input` written to the binary's stdin (else stdin is empty and
/// not a terminal).
pub fn run_command_with_input(
    cwd: &Path,
    args: &[&str],
    input: Option<&str>,
) -> (ExitStatus, String, String) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run roommanager");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(input.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("roommanager ends");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}
