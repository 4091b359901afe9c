//! A real SMTP server for the tests: `tests/it/smtp_server.py` (PyPI's aiosmtpd) in a child
//! process on 127.0.0.1, recording every delivered message as one JSON line in a file.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::tools::{self, Tool};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/smtp_server.py");

/// One delivered message, as the SMTP server parsed it.
#[derive(Debug, Clone, Deserialize)]
pub struct Mail {
    pub to: Vec<String>,
    pub from: String,
    pub subject: String,
    pub text: String,
}

impl Mail {
    /// The first `…/verify?token=…` link in the text, as a full URL.
    pub fn verify_link(&self) -> String {
        find_verify_link(&self.text)
            .unwrap_or_else(|| panic!("no verification link in the mail:\n{}", self.text))
    }
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

/// A free port on 127.0.0.1 (bound, read, released), for a server that starts later.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// Whether python3 with aiosmtpd can run here (see [`tools::require`]).
pub fn available() -> bool {
    tools::require(&[Tool::Aiosmtpd])
}

/// The running SMTP server; killed when dropped.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    /// Starts on a free port.
    pub fn start() -> SmtpServer {
        Self::start_on(free_port())
    }

    /// Starts on `port` and waits until it accepts connections.
    pub fn start_on(port: u16) -> SmtpServer {
        let dir = tempfile::tempdir().expect("temp dir for mails");
        let file = dir.path().join("mails.jsonl");
        let mut child = Command::new("python3")
            .arg(SCRIPT)
            .arg(port.to_string())
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3 tests/it/smtp_server.py");
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
            port,
            file,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.trim() == "READY" => return server,
                Ok(_) => continue,
                Err(_) => {
                    let status = server.child.try_wait().ok().flatten();
                    panic!(
                        "the SMTP server did not become ready on port {port} (exit: {status:?})"
                    );
                }
            }
        }
    }

    /// Every message delivered so far, in order.
    pub fn mails(&self) -> Vec<Mail> {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).expect("a JSON line from smtp_server.py"))
            .collect()
    }

    /// The messages delivered so far to `to` (compared without letter case).
    pub fn mails_to(&self, to: &str) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(to)))
            .collect()
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
                    "expected {count} mail(s) to {to} within {timeout:?}, got {}; all mails: {:#?}",
                    mails.len(),
                    self.mails()
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
