//! A real SMTP server for the tests: `tests/it/smtp_server.py` (PyPI's aiosmtpd) in a child
//! process on 127.0.0.1, recording every SMTP event (and every delivered message) as one JSON
//! line in a file, written before the server answers the command.
//!
//! The server binds port 0 itself and reports the port it got, so no other process can take the
//! port between choosing and binding it. A server started [`SmtpOptions::down`] holds its port
//! without listening (connections are refused) until [`SmtpServer::bring_up`]. Options add
//! STARTTLS or TLS from the first byte (a certificate from a throw-away CA made with `openssl`),
//! required AUTH, and 5xx refusals at RCPT or DATA.
//!
//! The mail queue helpers at the end read the server's store, as an admin would.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use roommanager::model::QueuedMail;
use serde::Deserialize;

use super::tools::{self, Tool};
use super::TestServer;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/smtp_server.py");

/// How long the script may take to start, or to acknowledge a command.
const SCRIPT_WAIT: Duration = Duration::from_secs(30);

/// The reply the server gives to a recipient refused with [`SmtpOptions::reject_rcpt`]
/// (`smtp_server.py`'s RCPT_REFUSED).
pub const RCPT_REFUSED: u16 = 550;
pub const RCPT_REFUSED_TEXT: &str = "5.1.1 Mailbox unavailable";
/// The reply the server gives to a message refused with [`SmtpOptions::reject_data`]
/// (`smtp_server.py`'s DATA_REFUSED).
pub const DATA_REFUSED: u16 = 554;
pub const DATA_REFUSED_TEXT: &str = "5.7.1 Message refused";
/// aiosmtpd's reply to AUTH with wrong credentials.
pub const AUTH_INVALID: u16 = 535;
pub const AUTH_INVALID_TEXT: &str = "5.7.8 Authentication credentials invalid";

/// One delivered message, as the SMTP server parsed it.
#[derive(Debug, Clone, Deserialize)]
pub struct Mail {
    pub to: Vec<String>,
    pub from: String,
    pub subject: String,
    pub text: String,
    /// Whether the session was encrypted (after STARTTLS, or TLS from the start).
    pub tls: bool,
    /// The user the session authenticated as, if it did.
    pub login: Option<String>,
}

impl Mail {
    /// The first `…/verify?token=…` link in the text, as a full URL.
    pub fn verify_link(&self) -> String {
        find_verify_link(&self.text)
            .unwrap_or_else(|| panic!("no verification link in the mail:\n{}", self.text))
    }
}

/// One thing the SMTP server saw, in order (see `smtp_server.py`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// EHLO, on a plain or an encrypted connection.
    Ehlo {
        tls: bool,
    },
    /// The STARTTLS command, recorded before the handshake (which may then fail).
    Starttls,
    /// An AUTH attempt: the mechanism, the user name given, whether it was accepted.
    Auth {
        mechanism: String,
        login: String,
        ok: bool,
        tls: bool,
    },
    /// MAIL FROM that reached the handler (after any STARTTLS and AUTH the server requires).
    MailFrom {
        address: String,
        tls: bool,
    },
    /// A command the server answered with `code` on purpose ([`SmtpOptions::reject_rcpt`],
    /// [`SmtpOptions::reject_data`]).
    Refused {
        command: String,
        code: u16,
        to: Vec<String>,
    },
    Delivered(Mail),
}

/// Finds a line-contained link `http(s)://…/verify?token=<64 hex>` in `text`.
pub fn find_verify_link(text: &str) -> Option<String> {
    text.split_whitespace()
        .map(|word| word.trim_matches(|c: char| matches!(c, '<' | '>' | '"' | '\'' | '(' | ')')))
        .find(|word| {
            (word.starts_with("http://") || word.starts_with("https://"))
                && word.contains("/verify?token=")
        })
        .map(str::to_owned)
}

/// Whether python3 with aiosmtpd can run here (see [`tools::require`]).
pub fn available() -> bool {
    tools::require(&[Tool::Aiosmtpd])
}

/// Whether the TLS tests can run: aiosmtpd, and `openssl` to make their certificates.
pub fn tls_available() -> bool {
    tools::require(&[Tool::Aiosmtpd, Tool::Openssl])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// STARTTLS offered, and required before MAIL.
    Starttls,
    /// TLS from the first byte (SMTPS).
    Implicit,
}

/// How to start the SMTP server; [`SmtpOptions::start`] starts it.
#[derive(Debug, Clone, Default)]
pub struct SmtpOptions {
    down: bool,
    tls: Option<TlsMode>,
    auth: Option<(String, String)>,
    auth_plaintext: bool,
    reject_rcpt: Option<String>,
    reject_data: Option<String>,
}

impl SmtpOptions {
    /// Hold the port but refuse connections until [`SmtpServer::bring_up`].
    pub fn down(mut self) -> Self {
        self.down = true;
        self
    }

    pub fn tls(mut self, mode: TlsMode) -> Self {
        self.tls = Some(mode);
        self
    }

    /// Offer AUTH PLAIN and LOGIN (over TLS only, unless [`SmtpOptions::auth_plaintext`]) and
    /// require it before MAIL; wrong credentials get [`AUTH_INVALID`].
    pub fn auth(mut self, user: &str, password: &str) -> Self {
        self.auth = Some((user.to_owned(), password.to_owned()));
        self
    }

    pub fn auth_plaintext(mut self) -> Self {
        self.auth_plaintext = true;
        self
    }

    /// Answer [`RCPT_REFUSED`] to every recipient containing `part` ("" for all).
    pub fn reject_rcpt(mut self, part: &str) -> Self {
        self.reject_rcpt = Some(part.to_owned());
        self
    }

    /// Answer [`DATA_REFUSED`] to DATA when a recipient contains `part` ("" for all).
    pub fn reject_data(mut self, part: &str) -> Self {
        self.reject_data = Some(part.to_owned());
        self
    }

    /// Starts the server and waits until it listens (or, if down, until it holds its port).
    pub fn start(self) -> SmtpServer {
        let dir = tempfile::tempdir().expect("temp dir for the SMTP server");
        let events = dir.path().join("events.jsonl");
        let mut cmd = Command::new("python3");
        cmd.arg(SCRIPT).arg(&events);
        if self.down {
            cmd.arg("--down");
        }
        let ca = self.tls.map(|mode| {
            let ca = TestCa::generate(dir.path());
            let flag = match mode {
                TlsMode::Starttls => "--starttls",
                TlsMode::Implicit => "--implicit-tls",
            };
            cmd.arg(flag).arg(&ca.cert).arg(&ca.key);
            ca
        });
        if let Some((user, password)) = &self.auth {
            cmd.args(["--auth", user, password]);
        }
        if self.auth_plaintext {
            cmd.arg("--auth-plaintext");
        }
        if let Some(part) = &self.reject_rcpt {
            cmd.args(["--reject-rcpt", part]);
        }
        if let Some(part) = &self.reject_data {
            cmd.args(["--reject-data", part]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3 tests/it/smtp_server.py");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = SmtpServer {
            child,
            port: 0,
            events,
            ca_cert: ca.map(|ca| ca.ca_cert),
            stdin: Mutex::new(stdin),
            lines: Mutex::new(rx),
            _dir: dir,
        };
        let first = server.next_line("PORT <n>");
        server.port = first
            .strip_prefix("PORT ")
            .and_then(|port| port.trim().parse().ok())
            .unwrap_or_else(|| panic!("smtp_server.py's first line is not PORT <n>: {first:?}"));
        if !self.down {
            server.expect_line("READY");
        }
        server
    }
}

/// The running SMTP server; killed when dropped (and it exits by itself when this test process
/// is gone: its stdin ends).
pub struct SmtpServer {
    child: Child,
    /// The port it holds on 127.0.0.1, chosen by the kernel.
    pub port: u16,
    events: PathBuf,
    ca_cert: Option<PathBuf>,
    stdin: Mutex<ChildStdin>,
    lines: Mutex<mpsc::Receiver<String>>,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    /// A plain server, no TLS, no AUTH, accepting everything, listening.
    pub fn start() -> SmtpServer {
        SmtpOptions::default().start()
    }

    /// A plain server holding its port without listening: connecting is refused until
    /// [`SmtpServer::bring_up`].
    pub fn start_down() -> SmtpServer {
        SmtpOptions::default().down().start()
    }

    pub fn options() -> SmtpOptions {
        SmtpOptions::default()
    }

    /// Starts listening (after [`SmtpOptions::down`]); returns once connections are accepted.
    pub fn bring_up(&self) {
        self.command("up");
    }

    /// Stops refusing: from now on no recipient or message is refused on purpose.
    pub fn accept_all(&self) {
        self.command("accept");
    }

    /// The certificate of the CA that signed the server's certificate (for TLS modes): the one
    /// root a client must trust to talk to this server.
    pub fn ca_cert(&self) -> &Path {
        self.ca_cert
            .as_deref()
            .expect("the server was started with TLS")
    }

    fn command(&self, name: &str) {
        {
            let mut stdin = self.stdin.lock().expect("stdin lock");
            writeln!(stdin, "{name}")
                .and_then(|()| stdin.flush())
                .unwrap_or_else(|e| panic!("cannot send {name:?} to smtp_server.py: {e}"));
        }
        self.expect_line(&format!("DONE {name}"));
    }

    /// Reads stdout lines until `wanted`; any other line first is a failure.
    fn expect_line(&self, wanted: &str) {
        let line = self.next_line(wanted);
        assert_eq!(line.trim(), wanted, "smtp_server.py said something else");
    }

    fn next_line(&self, waiting_for: &str) -> String {
        let lines = self.lines.lock().expect("stdout lock");
        match lines.recv_timeout(SCRIPT_WAIT) {
            Ok(line) => line,
            Err(_) => panic!(
                "smtp_server.py did not say {waiting_for:?} within {SCRIPT_WAIT:?} (see its \
                 stderr above)"
            ),
        }
    }

    /// Everything the server saw so far, in order.
    pub fn events(&self) -> Vec<Event> {
        let text = std::fs::read_to_string(&self.events).unwrap_or_default();
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("a JSON line from smtp_server.py ({e}): {line}"))
            })
            .collect()
    }

    /// Every message delivered so far, in order.
    pub fn mails(&self) -> Vec<Mail> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                Event::Delivered(mail) => Some(mail),
                _ => None,
            })
            .collect()
    }

    /// The messages delivered so far to `to` (compared without letter case).
    pub fn mails_to(&self, to: &str) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(to)))
            .collect()
    }

    /// The reply codes of the refusals ([`Event::Refused`]) for mail to `to`, in order.
    pub fn refusals_to(&self, to: &str) -> Vec<(String, u16)> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                Event::Refused {
                    command,
                    code,
                    to: rcpts,
                } if rcpts.iter().any(|t| t.eq_ignore_ascii_case(to)) => Some((command, code)),
                _ => None,
            })
            .collect()
    }

    /// The AUTH attempts so far: (user name given, accepted).
    pub fn auths(&self) -> Vec<(String, bool)> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                Event::Auth { login, ok, .. } => Some((login, ok)),
                _ => None,
            })
            .collect()
    }

    /// Waits until `check` holds for the events so far (polled, at most `timeout`); returns
    /// them.
    pub async fn wait_for_events(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[Event]) -> bool,
    ) -> Vec<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events();
            if check(&events) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "the SMTP server did not see {what} within {timeout:?}; it saw: {events:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a message to `to` has arrived; returns the latest one.
    pub async fn wait_for_mail(&self, to: &str, timeout: Duration) -> Mail {
        self.wait_for_mails(to, 1, timeout)
            .await
            .pop()
            .expect("at least one mail")
    }

    /// Waits until at least `count` messages to `to` have arrived; returns them all.
    pub async fn wait_for_mails(&self, to: &str, count: usize, timeout: Duration) -> Vec<Mail> {
        let deadline = Instant::now() + timeout;
        loop {
            let mails = self.mails_to(to);
            if mails.len() >= count {
                return mails;
            }
            if Instant::now() > deadline {
                panic!(
                    "expected {count} mail(s) to {to} within {timeout:?}, got {}; all events: {:#?}",
                    mails.len(),
                    self.events()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throw-away CA and a server certificate it signed for 127.0.0.1 and localhost, made with the
/// `openssl` command. A CA and a separate leaf, since a self-signed certificate that is its own
/// CA is refused as a server certificate by rustls (webpki: CaUsedAsEndEntity).
struct TestCa {
    ca_cert: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl TestCa {
    fn generate(dir: &Path) -> TestCa {
        let path = |name: &str| dir.join(name);
        let ext = path("leaf.ext");
        std::fs::write(
            &ext,
            "subjectAltName = IP:127.0.0.1, DNS:localhost\n\
             basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth\n",
        )
        .expect("write the certificate extensions");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let p = |name: &str| path(name).to_string_lossy().into_owned();
        openssl(
            &[
                &["req", "-x509", "-new"][..],
                &ec,
                &["-days", "2", "-subj", "/CN=RoomManager test CA"],
                &["-keyout", &p("ca.key"), "-out", &p("ca.pem")],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req", "-new"][..],
                &ec,
                &["-subj", "/CN=127.0.0.1"],
                &["-keyout", &p("key.pem"), "-out", &p("leaf.csr")],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("leaf.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p("leaf.ext"),
            "-out",
            &p("cert.pem"),
        ]);
        TestCa {
            ca_cert: path("ca.pem"),
            cert: path("cert.pem"),
            key: path("key.pem"),
        }
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("the TLS tests need the `openssl` command (Debian package `openssl`): {e}")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ----- the app's mail queue ---------------------------------------------------------------------

/// The app's mail queue (every message not yet delivered), oldest first.
pub async fn mail_queue(server: &TestServer) -> Vec<QueuedMail> {
    server
        .app()
        .store
        .run(|store| store.queued_mail())
        .await
        .expect("read the mail queue")
}

/// Waits until the queued message to `to` has failed at least `attempts` times; returns it.
pub async fn wait_for_failed_attempts(server: &TestServer, to: &str, attempts: u32) -> QueuedMail {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let queue = mail_queue(server).await;
        if let Some(mail) = queue
            .iter()
            .find(|m| m.to.eq_ignore_ascii_case(to) && m.attempts >= attempts)
        {
            return mail.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no queued mail to {to} with {attempts} failed attempt(s) within 20 s; queue: {queue:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until nothing is queued any more (every message delivered).
pub async fn wait_for_empty_queue(server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let queue = mail_queue(server).await;
        if queue.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the mail queue did not empty within 20 s: {queue:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
