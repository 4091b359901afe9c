//! A minimal W3C WebDriver client: starts Debian's `chromedriver` on a free 127.0.0.1 port, opens
//! one headless Chromium session and drives it over HTTP + JSON. Dropping it ends the session and
//! the driver.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use super::tools::{self, Tool};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key under which WebDriver answers an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long [`Browser::wait_for_text`] and the start-up wait poll.
pub const WAIT: Duration = Duration::from_secs(10);

/// Whether Chromium and chromedriver are installed (see [`tools::require`]).
pub fn available() -> bool {
    tools::require(&[Tool::Chromium, Tool::Chromedriver])
}

/// Where [`CSP_RECORDER`] keeps what it saw: the tab's session storage, which outlives page loads
/// within one origin.
const CSP_KEY: &str = "rm-csp-violations";

/// Runs first in every document: notes each CSP violation (what was blocked, by which
/// directive, on which page) under [`CSP_KEY`].
fn csp_recorder() -> String {
    format!(
        r#"document.addEventListener("securitypolicyviolation", (e) => {{
  try {{
    const seen = JSON.parse(sessionStorage.getItem({CSP_KEY:?}) || "[]");
    seen.push(`${{location.pathname}}: ${{e.effectiveDirective}} blocked ${{e.blockedURI || "inline"}}`);
    sessionStorage.setItem({CSP_KEY:?}, JSON.stringify(seen));
  }} catch (_) {{}}
}});"#
    )
}

/// One headless Chromium session behind its own chromedriver.
pub struct Browser {
    driver: Child,
    port: u16,
    http: reqwest::Client,
    /// `/session/ID`, once the session exists.
    session: String,
    profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Browser {
        Self::start_with(&[]).await
    }

    /// A session whose camera and microphone are Chromium's fake ones (a moving test picture and
    /// a beep), granted without asking.
    pub async fn start_with_camera() -> Browser {
        Self::start_with(&[
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
        ])
        .await
    }

    /// A session with these Chromium switches besides the usual ones.
    pub async fn start_with(extra_args: &[&str]) -> Browser {
        let port = super::spare_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let profile = tempfile::tempdir().expect("temp dir for the browser profile");
        let mut browser = Browser {
            driver,
            port,
            http: reqwest::Client::new(),
            session: String::new(),
            profile,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let answer = browser.call(Method::GET, "/status", None).await;
            if answer.is_ok_and(|v| v["ready"] == true) {
                break;
            }
            if let Ok(Some(status)) = browser.driver.try_wait() {
                panic!("chromedriver on port {port} exited: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver is not ready after {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile_dir = format!("--user-data-dir={}", browser.profile.path().display());
        let mut args = vec![
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            &profile_dir,
        ];
        args.extend_from_slice(extra_args);
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let created = browser
            .call(Method::POST, "/session", Some(capabilities))
            .await
            .unwrap_or_else(|e| panic!("chromedriver does not start Chromium: {e}"));
        let id = created["sessionId"].as_str().expect("a session id");
        browser.session = format!("/session/{id}");
        // Before any script of any page runs, so that no violation escapes it.
        let recorder = json!({
            "cmd": "Page.addScriptToEvaluateOnNewDocument",
            "params": {"source": csp_recorder()},
        });
        browser
            .cmd(Method::POST, "/goog/cdp/execute", Some(recorder))
            .await;
        browser
    }

    /// Every Content-Security-Policy violation the pages of this site reported in this tab (see
    /// [`csp_recorder`]).
    pub async fn csp_violations(&self) -> Vec<String> {
        let seen = self
            .execute(&format!(
                "return JSON.parse(sessionStorage.getItem({CSP_KEY:?}) || '[]')"
            ))
            .await;
        serde_json::from_value(seen).expect("a list of strings")
    }

    /// One WebDriver command (`path` on the driver); its `value`, or the driver's error as text.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let ok = response.status().is_success();
        let mut answer: Value = response.json().await.map_err(|e| e.to_string())?;
        let value = answer["value"].take();
        if ok {
            Ok(value)
        } else {
            Err(format!("{}: {}", value["error"], value["message"]))
        }
    }

    /// A command on this session that must succeed.
    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let what = format!("{method} {path}");
        self.call(method, &format!("{}{path}", self.session), body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {what}: {e}"))
    }

    /// Opens `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) {
        self.cmd(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn try_find(&self, css: &str) -> Option<String> {
        let body = json!({"using": "css selector", "value": css});
        let path = format!("{}/element", self.session);
        let found = self.call(Method::POST, &path, Some(body)).await.ok()?;
        found[ELEMENT].as_str().map(str::to_owned)
    }

    /// The element matching `css`, waiting for it up to [`WAIT`].
    pub async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(id) = self.try_find(css).await {
                return id;
            }
            if Instant::now() > deadline {
                panic!(
                    "no element {css:?} on {} after {WAIT:?}; page:\n{}",
                    self.current_url().await,
                    self.page_source().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn type_text(&self, element: &str, text: &str) {
        let path = format!("/element/{element}/value");
        self.cmd(Method::POST, &path, Some(json!({ "text": text })))
            .await;
    }

    /// Empties an input (before typing a new value into it).
    pub async fn clear(&self, element: &str) {
        let path = format!("/element/{element}/clear");
        self.cmd(Method::POST, &path, Some(json!({}))).await;
    }

    pub async fn click(&self, element: &str) {
        let path = format!("/element/{element}/click");
        self.cmd(Method::POST, &path, Some(json!({}))).await;
    }

    /// Chooses a file in an `<input type=file>`, as a person picking it would.
    pub async fn upload(&self, element: &str, file: &Path) {
        assert!(file.is_absolute(), "upload needs an absolute path");
        self.type_text(element, file.to_str().expect("UTF-8 path"))
            .await;
    }

    pub async fn current_url(&self) -> String {
        let url = self.cmd(Method::GET, "/url", None).await;
        url.as_str().expect("URL is a string").to_owned()
    }

    pub async fn page_source(&self) -> String {
        let source = self.cmd(Method::GET, "/source", None).await;
        source.as_str().expect("source is a string").to_owned()
    }

    /// The visible text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        let text = self
            .cmd(Method::GET, &format!("/element/{element}/text"), None)
            .await;
        text.as_str().expect("text is a string").to_owned()
    }

    /// The attribute `name` of `element` as written in the page, if it has one.
    pub async fn attribute(&self, element: &str, name: &str) -> Option<String> {
        let path = format!("/element/{element}/attribute/{name}");
        let value = self.cmd(Method::GET, &path, None).await;
        value.as_str().map(str::to_owned)
    }

    /// Waits up to [`WAIT`] until the text of `css` contains `needle` (pages load after clicks).
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(element) = self.try_find(css).await {
                let path = format!("{}/element/{element}/text", self.session);
                if let Ok(Value::String(text)) = self.call(Method::GET, &path, None).await {
                    if text.contains(needle) {
                        return text;
                    }
                    last = text;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{css:?} never said {needle:?} (last: {last:?}) on {}; page:\n{}",
            self.current_url().await,
            self.page_source().await
        );
    }

    /// Runs `script` (a function body; `return` gives the answer) in the page.
    pub async fn execute(&self, script: &str) -> Value {
        let body = json!({"script": script, "args": []});
        self.cmd(Method::POST, "/execute/sync", Some(body)).await
    }

    /// Whether `element` is shown, by WebDriver's visibility rules (computed CSS, size, hidden
    /// ancestors), as a person would judge it.
    pub async fn displayed(&self, element: &str) -> bool {
        let path = format!("/element/{element}/displayed");
        self.cmd(Method::GET, &path, None).await == Value::Bool(true)
    }

    /// The cookie `name` as the browser holds it (HttpOnly ones too): its WebDriver JSON object.
    pub async fn cookie(&self, name: &str) -> Option<Value> {
        let path = format!("{}/cookie/{name}", self.session);
        self.call(Method::GET, &path, None).await.ok()
    }

    /// Waits up to [`WAIT`] for a user prompt (`alert`, `confirm`), accepts it and returns its
    /// text.
    pub async fn accept_alert(&self) -> String {
        let deadline = Instant::now() + WAIT;
        let text_path = format!("{}/alert/text", self.session);
        let text = loop {
            if let Ok(text) = self.call(Method::GET, &text_path, None).await {
                break text.as_str().unwrap_or_default().to_owned();
            }
            assert!(Instant::now() < deadline, "no dialog opened after {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.cmd(Method::POST, "/alert/accept", Some(json!({})))
            .await;
        text
    }

    /// Makes the viewport `width`×`height` CSS pixels at scale 1: a phone's (`mobile`: the page's
    /// `<meta name=viewport>` applies, touch-sized) or a desktop window's. Screenshots are then
    /// exactly that size.
    pub async fn set_viewport(&self, width: u32, height: u32, mobile: bool) {
        let metrics = json!({
            "cmd": "Emulation.setDeviceMetricsOverride",
            "params": {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        });
        self.cmd(Method::POST, "/goog/cdp/execute", Some(metrics))
            .await;
    }

    /// Answers `prefers-color-scheme` with `scheme` (`"dark"` or `"light"`) from now on, as a
    /// system set to that scheme would.
    pub async fn prefer_color_scheme(&self, scheme: &str) {
        let media = json!({
            "cmd": "Emulation.setEmulatedMedia",
            "params": {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
        });
        self.cmd(Method::POST, "/goog/cdp/execute", Some(media))
            .await;
    }

    /// Saves a PNG screenshot of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let encoded = self.cmd(Method::GET, "/screenshot", None).await;
        let png = base64_decode(encoded.as_str().expect("base64 text"));
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    /// Ends the session (which closes Chromium), then stops chromedriver. Drop cannot await, so
    /// the DELETE is one plain blocking HTTP/1.1 request.
    fn drop(&mut self) {
        if !self.session.is_empty() {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let request = format!(
                    "DELETE {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                    self.session, self.port
                );
                if stream.write_all(request.as_bytes()).is_ok() {
                    let _ = stream.read(&mut [0u8; 1024]);
                }
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Decodes standard base64 (padding and line breaks allowed).
pub fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut out, mut bits, mut nbits) = (Vec::new(), 0u32, 0);
    for byte in text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
    {
        let digit = ALPHABET.iter().position(|&a| a == byte);
        bits = (bits << 6) | digit.expect("a base64 character") as u32;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
        }
    }
    out
}
