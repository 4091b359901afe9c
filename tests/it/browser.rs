//! The account pages in a real browser: headless Chromium driven through chromedriver registers,
//! follows the emailed link, logs in, edits the profile, uploads an avatar and logs out, checking
//! what a person would see at each step.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, COOKIE};
use reqwest::StatusCode;

use crate::common::webdriver::{self, base64_decode, Browser};
use crate::common::TestServer;

const USERNAME: &str = "alice";
const EMAIL: &str = "alice@example.com";
const PASSWORD: &str = "correct horse";
/// Typed through WebDriver, so only characters of the Basic Multilingual Plane (no emoji).
const NICKNAME: &str = "Alice 星";
/// Where a copy of the profile page's screenshot is left for a person to look at.
const SCREENSHOT_COPY: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/rm-me.png");

#[tokio::test]
async fn account_pages_work_in_a_real_browser() {
    if !webdriver::available() {
        return;
    }
    let started = Instant::now();
    let server = TestServer::start().await; // server.public_url is this server's address
    let work = tempfile::tempdir().expect("temp dir");
    let browser = Browser::start().await;

    // 1. Register through the form.
    browser.goto(&server.url("/register")).await;
    assert_eq!(browser.text("h1").await, "Create an account");
    fill(&browser, "form[action='/register']", "username", USERNAME).await;
    fill(&browser, "form[action='/register']", "email", EMAIL).await;
    fill(&browser, "form[action='/register']", "password", PASSWORD).await;
    submit(&browser, "form[action='/register']").await;
    browser.wait_for_text("h1", "Check your email").await;
    assert!(browser.text("main p").await.contains(EMAIL));

    // 2. Follow the emailed link: verified once, "already verified" after that.
    let link = verification_link(&server.data.path().join("outbox")).await;
    assert!(
        link.starts_with(&format!("{}/verify?token=", server.base)),
        "the link leads back to this server: {link}"
    );
    browser.goto(&link).await;
    browser.wait_for_text("h1", "Your email is verified").await;
    assert!(browser.text("main p").await.contains(USERNAME));
    browser.goto(&link).await;
    browser.wait_for_text("h1", "Already verified").await;

    // 3. Log in: a wrong password shows an error on the login page; the right one leads to /me.
    browser.goto(&server.url("/login")).await;
    fill(&browser, "form[action='/login']", "login", USERNAME).await;
    fill(
        &browser,
        "form[action='/login']",
        "password",
        "not the password",
    )
    .await;
    submit(&browser, "form[action='/login']").await;
    let error = browser.wait_for_text("p.error", "password").await;
    assert!(error.to_lowercase().contains("wrong"), "error: {error}");
    assert_eq!(browser.text("h1").await, "Log in");
    assert_eq!(browser.current_url().await, server.url("/login"));
    let kept = browser
        .execute("return document.querySelector('input[name=login]').value")
        .await;
    assert_eq!(kept, USERNAME, "the login field keeps what was typed");
    fill(&browser, "form[action='/login']", "password", PASSWORD).await;
    submit(&browser, "form[action='/login']").await;
    browser.wait_for_text("h1", "Your profile").await;
    assert_eq!(browser.current_url().await, server.url("/me"));
    assert_eq!(browser.text("header a.who").await, USERNAME);
    assert!(browser.text("main").await.contains(EMAIL));
    // The session cookie is HttpOnly: JavaScript cannot see it, yet the browser sends it.
    let visible = browser.execute("return document.cookie").await;
    assert!(!visible.as_str().unwrap_or("").contains("rm_session"));
    browser.goto(&server.url("/")).await;
    assert_eq!(browser.text("header a.who").await, USERNAME);
    browser.goto(&server.url("/me")).await;
    assert_eq!(browser.current_url().await, server.url("/me"));

    // 4. Change the nickname.
    let nickname = field(&browser, "form[action='/me/profile']", "nickname").await;
    browser.clear(&nickname).await;
    browser.type_text(&nickname, NICKNAME).await;
    submit(&browser, "form[action='/me/profile']").await;
    browser.wait_for_text("p.ok", "saved").await;
    assert_eq!(browser.text("p.ok").await, "Your profile is saved.");
    assert_eq!(browser.text("header a.who").await, NICKNAME);
    assert_eq!(browser.text(".avatar-row strong").await, NICKNAME);

    // 5. Upload an avatar through the file input; the page shows it and it loads.
    assert!(browser.try_find("img.avatar").await.is_none());
    let png = work.path().join("avatar.png");
    write_png(&png, 64, 48);
    let input = field(&browser, "form[action='/me/avatar']", "image").await;
    browser.upload(&input, &png).await;
    submit(&browser, "form[action='/me/avatar']").await;
    browser.wait_for_text("p.ok", "avatar").await;
    assert_eq!(browser.text("p.ok").await, "Your new avatar is saved.");
    let img = browser.find("img.avatar").await;
    let src = browser.attribute(&img, "src").await.unwrap_or_default();
    assert!(src.starts_with("/files/avatars/"), "avatar src: {src}");
    let width = wait_for_image(&browser, "img.avatar").await;
    assert_eq!(width, 64, "the avatar keeps its size (under 512 px)");

    // 8. A screenshot of the profile page, kept in the temp dir and copied for a person.
    let shot = work.path().join("me.png");
    browser.screenshot(&shot).await;
    let bytes = std::fs::read(&shot).expect("screenshot written");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is a PNG"
    );
    assert!(
        bytes.len() > 10_000,
        "a real page, not a blank: {} bytes",
        bytes.len()
    );
    let image = image::load_from_memory(&bytes).expect("the screenshot decodes");
    assert!(image.width() >= 800 && image.height() >= 500);
    std::fs::copy(&shot, SCREENSHOT_COPY).expect("copy the screenshot");

    // 6. CSRF: a form POST without the token is refused, with or without the cookie.
    let form = format!("login={USERNAME}&password=correct+horse");
    let no_token = server
        .client
        .post(server.url("/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form.clone())
        .send()
        .await
        .expect("POST /login");
    assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
    assert!(no_token
        .headers()
        .get("set-cookie")
        .is_none_or(|c| { !c.to_str().unwrap_or("").starts_with("rm_session=") }));
    let page = no_token.text().await.expect("body");
    assert!(page.contains("<html"), "an HTML page for a person: {page}");
    assert!(page.contains("did not come from this site"), "{page}");
    let cookie_only = server
        .client
        .post(server.url("/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(COOKIE, format!("rm_csrf={}", "ab".repeat(32)))
        .body(form)
        .send()
        .await
        .expect("POST /login");
    assert_eq!(cookie_only.status(), StatusCode::FORBIDDEN);

    // 7. Log out with the button on /logout: home page, "Log in" again, /me leads to /login.
    browser.goto(&server.url("/logout")).await;
    submit(&browser, "form[action='/logout']").await;
    browser.wait_for_text("h1", "Live now").await;
    assert_eq!(browser.current_url().await, server.url("/"));
    let nav = browser.text("header nav").await;
    assert!(
        nav.contains("Log in") && !nav.contains(NICKNAME),
        "header: {nav}"
    );
    assert!(browser.try_find("header a.who").await.is_none());
    browser.goto(&server.url("/me")).await;
    assert_eq!(browser.current_url().await, server.url("/login"));
    assert_eq!(browser.text("h1").await, "Log in");

    // 9. Every page above worked under its Content-Security-Policy without a violation. The
    // recorder does see one: an inline script, which the policy blocks.
    assert_eq!(browser.csp_violations().await, Vec::<String>::new());
    browser
        .execute(
            "const s = document.createElement('script'); \
             s.textContent = 'window.injected = true'; document.body.append(s);",
        )
        .await;
    let deadline = Instant::now() + webdriver::WAIT;
    while browser.csp_violations().await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no violation recorded for an inline script"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        browser.csp_violations().await,
        ["/login: script-src-elem blocked inline"]
    );
    assert_eq!(
        browser.execute("return window.injected === true").await,
        false
    );

    drop(browser);
    server.stop().await;
    eprintln!("browser test took {:.1?}", started.elapsed());
}

/// The input `name` inside `form`.
async fn field(browser: &Browser, form: &str, name: &str) -> String {
    browser.find(&format!("{form} [name='{name}']")).await
}

async fn fill(browser: &Browser, form: &str, name: &str, text: &str) {
    let input = field(browser, form, name).await;
    browser.type_text(&input, text).await;
}

async fn submit(browser: &Browser, form: &str) {
    let button = browser.find(&format!("{form} button[type='submit']")).await;
    browser.click(&button).await;
}

/// Waits until the image `css` has loaded; its natural width.
async fn wait_for_image(browser: &Browser, css: &str) -> u64 {
    let script = format!(
        "const i = document.querySelector(\"{css}\"); \
         return i && i.complete ? i.naturalWidth : -1;"
    );
    let deadline = Instant::now() + webdriver::WAIT;
    loop {
        let width = browser.execute(&script).await;
        match width.as_i64() {
            Some(w) if w > 0 => return w as u64,
            Some(0) => panic!("the image {css} does not load (naturalWidth 0)"),
            _ if Instant::now() > deadline => panic!("the image {css} is still loading"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Waits (at most 10 s) for the one verification mail in the outbox and returns its link.
async fn verification_link(outbox: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mail = loop {
        let mut files: Vec<PathBuf> = std::fs::read_dir(outbox)
            .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        if let [file] = files.as_slice() {
            break std::fs::read_to_string(file).expect("read the .eml");
        }
        assert!(files.len() < 2, "one mail expected: {files:?}");
        assert!(
            Instant::now() < deadline,
            "no mail in {outbox:?} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let body = mail_body(&mail);
    body.split_whitespace()
        .find(|word| word.contains("/verify?token="))
        .unwrap_or_else(|| panic!("no verification link in:\n{body}"))
        .to_owned()
}

/// The decoded text body of a single-part mail (7bit, quoted-printable or base64).
fn mail_body(mail: &str) -> String {
    let (head, body) = mail
        .split_once("\r\n\r\n")
        .or_else(|| mail.split_once("\n\n"))
        .expect("headers, then a body");
    let encoding = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-transfer-encoding")
                .then(|| value.trim().to_ascii_lowercase())
        })
        .unwrap_or_default();
    let bytes = match encoding.as_str() {
        "base64" => base64_decode(body),
        "quoted-printable" => quoted_printable_decode(body),
        _ => body.as_bytes().to_vec(),
    };
    String::from_utf8(bytes).expect("a UTF-8 body")
}

fn quoted_printable_decode(text: &str) -> Vec<u8> {
    let text = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) if bytes[i] == b'=' => {
                out.push(byte);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// A colourful `width`×`height` PNG, as a person's photo would be.
fn write_png(path: &Path, width: u32, height: u32) {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 160])
    });
    image.save(path).expect("write the PNG");
}
