//! Chinese and English: the language of pages and API error messages comes from the `lang`
//! cookie (set by the footer's switch), else `Accept-Language`, else English. Error `code`s stay
//! English whatever the language; bad cookies and headers fall back to a working page.

use reqwest::header::{ACCEPT_LANGUAGE, CONTENT_LENGTH, REFERER};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::accounts::{relaxed, send, verified_user, Reply, PASSWORD};
use crate::admin::{admin_token, make_admin, ADMIN_PASSWORD};
use crate::common::webdriver::{self, Browser};
use crate::common::TestServer;
use crate::record_pages::list_record;
use crate::rooms::Site;
use crate::web_hardening::no_redirects;

const ZH: &str = "zh-CN,zh;q=0.9";

/// `GET path` with these request headers.
async fn page(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = server.client.get(server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request).await
}

/// The `lang` of a page's `<html>` element.
#[track_caller]
fn html_lang(reply: &Reply) -> &str {
    reply
        .text
        .split("<html lang=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("an <html lang> in {}", reply.text))
}

#[track_caller]
fn assert_in(reply: &Reply, lang: &str, needles: &[&str]) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(html_lang(reply), lang, "{}", reply.text);
    for needle in needles {
        assert!(reply.text.contains(needle), "{needle:?} in {}", reply.text);
    }
}

#[tokio::test]
async fn pages_speak_the_language_the_browser_asks_for() {
    let server = TestServer::start().await;
    let login = page(&server, "/login", &[("accept-language", ZH)]).await;
    assert_in(
        &login,
        "zh-CN",
        &["<h1>登录</h1>", "用户名或邮箱", "以游客身份继续"],
    );
    // The switch offers the other language, in its own name.
    assert!(login.text.contains("<a href=\"/lang/en\" lang=\"en\""));
    let register = page(&server, "/register", &[("accept-language", ZH)]).await;
    assert_in(&register, "zh-CN", &["<h1>创建账号</h1>", "<title>注册 · "]);

    let english = page(
        &server,
        "/register",
        &[("accept-language", "en-GB,en;q=0.8")],
    )
    .await;
    assert_in(&english, "en", &["<h1>Create an account</h1>"]);
    assert!(!english.text.contains("创建账号"));
    assert!(english
        .text
        .contains("<a href=\"/lang/zh-CN\" lang=\"zh-CN\""));
    // No preference, or only languages the site does not speak: English.
    assert_in(
        &page(&server, "/login", &[]).await,
        "en",
        &["<h1>Log in</h1>"],
    );
    assert_in(
        &page(&server, "/login", &[("accept-language", "fr-FR, de;q=0.5")]).await,
        "en",
        &["<h1>Log in</h1>"],
    );
    // The more preferred language wins, whatever the order.
    assert_in(
        &page(
            &server,
            "/login",
            &[("accept-language", "en;q=0.3, zh;q=0.7")],
        )
        .await,
        "zh-CN",
        &["<h1>登录</h1>"],
    );
}

#[tokio::test]
async fn the_switch_remembers_the_choice_over_accept_language() {
    let server = TestServer::start().await;
    let client = no_redirects();
    let from = server.url("/records?q=night");
    let switched = send(client.get(server.url("/lang/zh-CN")).header(REFERER, &from))
        .await
        .expect(StatusCode::SEE_OTHER);
    // Back to the same page, with the choice in a cookie that outlives the session.
    assert_eq!(
        switched.header("location").as_deref(),
        Some("/records?q=night")
    );
    let cookie = switched
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("lang=zh-CN;"))
        .unwrap_or_else(|| panic!("a lang cookie in {:?}", switched.set_cookies()));
    assert!(cookie.contains("Max-Age=31536000"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");

    // The cookie wins over the browser's English.
    let records = page(
        &server,
        "/records?q=night",
        &[("accept-language", "en"), ("cookie", "lang=zh-CN")],
    )
    .await;
    assert_in(
        &records,
        "zh-CN",
        &["<h1>录像</h1>", "找到 0 个与“night”相关的录像。"],
    );

    // And back: English chosen over a Chinese browser.
    let back = send(
        client
            .get(server.url("/lang/en"))
            .header(REFERER, server.url("/login")),
    )
    .await
    .expect(StatusCode::SEE_OTHER);
    assert!(back.set_cookies().iter().any(|c| c.starts_with("lang=en;")));
    let login = page(
        &server,
        "/login",
        &[("accept-language", ZH), ("cookie", "rm_x=1; lang=en")],
    )
    .await;
    assert_in(&login, "en", &["<h1>Log in</h1>"]);

    // The switch never sends anyone to another site: a foreign or missing Referer goes home.
    for referer in ["http://evil.example/phish", "javascript:alert(1)"] {
        let reply = send(
            client
                .get(server.url("/lang/zh-CN"))
                .header(REFERER, referer),
        )
        .await
        .expect(StatusCode::SEE_OTHER);
        assert_eq!(reply.header("location").as_deref(), Some("/"), "{referer}");
    }
    let evil_path = format!("{}//evil.example/", server.url(""));
    let reply = send(
        client
            .get(server.url("/lang/zh-CN"))
            .header(REFERER, evil_path.trim_end_matches('/')),
    )
    .await;
    assert_eq!(reply.header("location").as_deref(), Some("/"));
    // A language the site does not speak forgets the choice.
    let unknown = send(client.get(server.url("/lang/klingon")))
        .await
        .expect(StatusCode::SEE_OTHER);
    assert!(
        unknown
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("lang=;") && c.contains("Max-Age=0")),
        "{:?}",
        unknown.set_cookies()
    );
}

#[tokio::test]
async fn api_errors_keep_their_code_and_speak_the_readers_language() {
    let server = TestServer::start_with(relaxed).await;
    verified_user(&server, "linmei").await;
    let wrong = json!({"login": "linmei", "password": "not the password"});
    let zh = send(
        server
            .client
            .post(server.url("/api/v1/login"))
            .header(ACCEPT_LANGUAGE, ZH)
            .json(&wrong),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(zh.json()["error"]["message"], "用户名、邮箱或密码错误。");
    let en = send(server.client.post(server.url("/api/v1/login")).json(&wrong))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(
        en.json()["error"]["message"],
        "Wrong username, email or password."
    );

    // A value the error carries is filled into the translation.
    let too_large = send(
        server
            .client
            .post(server.url("/api/v1/login"))
            .header(ACCEPT_LANGUAGE, ZH)
            .header(CONTENT_LENGTH, "100000000")
            .body(vec![b' '; 16]),
    )
    .await;
    let message = too_large.json()["error"]["message"]
        .as_str()
        .expect("a message")
        .to_owned();
    assert_eq!(too_large.code(), "payload_too_large");
    assert!(message.starts_with("请求内容超过了 "), "{message}");
    assert!(!message.contains('{'), "{message}");

    // An error page for a person, in Chinese: the page's language and its words.
    let missing = page(&server, "/no/such/page", &[("accept-language", ZH)]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(html_lang(&missing), "zh-CN");
    assert!(
        missing.text.contains("404 · 找不到页面"),
        "{}",
        missing.text
    );
    assert!(
        missing.text.contains("这个地址什么都没有。"),
        "{}",
        missing.text
    );
    // The same error for a program under /api stays JSON, its code English.
    let api_missing = page(&server, "/api/v1/nothing", &[("accept-language", ZH)]).await;
    assert_eq!(api_missing.status, StatusCode::NOT_FOUND);
    assert_eq!(api_missing.code(), "not_found");
    assert_eq!(
        api_missing.json()["error"]["message"],
        "这个地址什么都没有。"
    );

    // The session still works after all that, in either language.
    let ok = send(
        server
            .client
            .post(server.url("/api/v1/login"))
            .header(ACCEPT_LANGUAGE, ZH)
            .json(&json!({"login": "linmei", "password": PASSWORD})),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
}

#[tokio::test]
async fn bad_cookies_and_headers_fall_back_to_a_working_page() {
    let server = TestServer::start().await;
    let giant_cookie = format!("lang={}", "z".repeat(4000));
    let giant_accept = "xx;q=abc, ".repeat(400) + "zh";
    let cases: [(&[(&str, &str)], &str); 6] = [
        // A cookie naming no language we speak: the browser's preference decides.
        (
            &[("cookie", "lang=klingon"), ("accept-language", ZH)],
            "zh-CN",
        ),
        (&[("cookie", "lang=<script>")], "en"),
        (&[("cookie", "lang=")], "en"),
        (&[("cookie", &giant_cookie)], "en"),
        // Past the first entries a header is someone's experiment: English, quickly.
        (&[("accept-language", &giant_accept)], "en"),
        (&[("accept-language", "zh;q=2, zh;q=-1, zh;q=nan")], "en"),
    ];
    for (headers, lang) in cases {
        let reply = page(&server, "/login", headers).await;
        assert_eq!(reply.status, StatusCode::OK, "{headers:?}: {}", reply.text);
        assert_eq!(html_lang(&reply), lang, "{headers:?}");
    }
    // A well-behaved reader is still served in their language.
    let reply = page(&server, "/login", &[("accept-language", ZH)]).await;
    assert_in(&reply, "zh-CN", &["<h1>登录</h1>"]);
}

#[tokio::test]
async fn recordings_show_dates_and_numbers_the_readers_way() {
    let server = TestServer::start_with(relaxed).await;
    let (host, _) = verified_user(&server, "datehost").await;
    // 2026-11-26.
    let record = list_record(&server, host, "Evening", 1_795_714_121, 75, "/r/e.mp4");
    let zh = page(&server, "/records", &[("accept-language", ZH)]).await;
    assert_in(
        &zh,
        "zh-CN",
        &[
            "<time datetime=\"2026-11-26\">2026年11月26日</time>",
            "<span class=\"record-views\">0</span> 次观看",
        ],
    );
    let en = page(&server, "/records", &[]).await;
    assert_in(
        &en,
        "en",
        &["<time datetime=\"2026-11-26\">2026-11-26</time>"],
    );
    let replay = page(
        &server,
        &format!("/records/{}", record.id.0),
        &[("accept-language", ZH)],
    )
    .await;
    assert_in(
        &replay,
        "zh-CN",
        &[
            "2026年11月26日",
            "登录后才能评论",
            "data-t-confirm-comment=\"删除这条评论？\"",
        ],
    );
}

#[tokio::test]
async fn the_footer_switch_works_in_a_real_browser_and_chinese_gets_cjk_fonts() {
    if !webdriver::available() {
        return;
    }
    let server = TestServer::start().await;
    let browser = Browser::start().await;
    browser.goto(&server.url("/login")).await;
    browser.wait_for_text("main h1", "Log in").await;
    let to_chinese = browser.find("footer a[href='/lang/zh-CN']").await;
    browser.click(&to_chinese).await;
    // Back on the same page, now in Chinese, remembered in the cookie.
    browser.wait_for_text("main h1", "登录").await;
    assert!(browser.current_url().await.ends_with("/login"));
    assert_eq!(
        browser
            .execute("return document.documentElement.lang;")
            .await,
        "zh-CN"
    );
    let cookie = browser.cookie("lang").await.expect("the lang cookie");
    assert_eq!(cookie["value"], "zh-CN");
    // The stylesheet names CJK fonts for the page, and the Chinese heading is not cut.
    let fonts = browser
        .execute("return getComputedStyle(document.body).fontFamily;")
        .await;
    let fonts = fonts.as_str().expect("a font list");
    for family in ["PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC"] {
        assert!(fonts.contains(family), "{family} in {fonts}");
    }
    let fits = browser
        .execute(
            "const h = document.querySelector('main h1'); \
             return h.scrollWidth <= h.clientWidth && h.getBoundingClientRect().width > 0;",
        )
        .await;
    assert_eq!(fits, true);
    // Another page keeps the choice; the switch goes back to English.
    browser.goto(&server.url("/register")).await;
    browser.wait_for_text("main h1", "创建账号").await;
    let to_english = browser.find("footer a[href='/lang/en']").await;
    browser.click(&to_english).await;
    browser.wait_for_text("main h1", "Create an account").await;
    assert!(browser.csp_violations().await.is_empty());
}

/// `path` with the session cookie `token` (the user's or the admin's, by `cookie`) and the
/// browser's language `accept` (none: no header).
async fn signed_page(
    server: &TestServer,
    path: &str,
    cookie: &str,
    token: &str,
    accept: Option<&str>,
) -> Reply {
    let mut headers = vec![("cookie", format!("{cookie}={token}"))];
    if let Some(lang) = accept {
        headers.push(("accept-language", lang.to_owned()));
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    page(server, path, &headers).await
}

#[tokio::test]
async fn the_home_room_studio_and_admin_pages_speak_the_readers_language() {
    let site = Site::start().await;
    let (host_id, host_token) = site.user("zhhost").await;
    let mut host = site.ws(&host_token).await;
    host.send(json!({"type": "start_live"})).await;
    host.expect("live_started").await;
    let room = site.room_of(host_id);
    let guest = site.guest().await;
    let room_path = format!("/room/{room}");
    let session = "rm_session";

    // The home page and the header.
    let home = page(&site.server, "/", &[("accept-language", ZH)]).await;
    assert_in(
        &home,
        "zh-CN",
        &["<h1>正在直播</h1>", "最新录像", "人在看", ">录像</a>"],
    );
    let english = page(&site.server, "/", &[]).await;
    assert_in(&english, "en", &["<h1>Live now</h1>", "Latest recordings"]);
    assert!(!english.text.contains("正在直播"));

    // The room as the host: the buttons, the console, and the script's words for room.js and
    // publish.js (data-t-* attributes), the room socket's errors among them.
    let console = signed_page(&site.server, &room_path, session, &host_token, Some(ZH)).await;
    assert_in(
        &console,
        "zh-CN",
        &[
            "主播控制台",
            ">开播</button>",
            "用摄像头开播",
            "用 OBS 或 ffmpeg 推流",
            "data-t-phase-live=\"直播中\"",
            "data-t-reconnecting=\"连接已断开，{secs} 秒后重新连接…\"",
            "data-t-error-chat-banned=\"你已被禁言。\"",
            "data-t-state-pushing=\"推流中\"",
        ],
    );
    let console_en = signed_page(&site.server, &room_path, session, &host_token, None).await;
    assert_in(
        &console_en,
        "en",
        &[
            "Host console",
            ">Go live</button>",
            "data-t-phase-live=\"live\"",
            // In English the page shows the server's own message.
            "data-t-error-chat-banned=\"{detail}\"",
        ],
    );
    assert!(!console_en.text.contains("主播控制台"));

    // The room as a guest: the invitation to register.
    let invited = signed_page(&site.server, &room_path, session, &guest, Some(ZH)).await;
    assert_in(
        &invited,
        "zh-CN",
        &["后即可发弹幕、送礼物和连麦。", "注册后才能发弹幕"],
    );
    assert!(!invited.text.contains("主播控制台"));
    let invited_en = signed_page(&site.server, &room_path, session, &guest, None).await;
    assert_in(&invited_en, "en", &["to chat, send gifts and co-stream."]);

    // /studio for someone without a room.
    let studio = signed_page(&site.server, "/studio", session, &guest, Some(ZH)).await;
    assert_in(&studio, "zh-CN", &["还没有直播间"]);
    let studio_en = signed_page(&site.server, "/studio", session, &guest, None).await;
    assert_in(&studio_en, "en", &["No room yet"]);

    // The admin dashboard and users page: the nav, the figures, dates the reader's way.
    make_admin(&site.server, "zhadmin");
    let admin = admin_token(&site.server.url(""), "zhadmin", ADMIN_PASSWORD).await;
    let dashboard = signed_page(&site.server, "/admin", "rm_admin", &admin, Some(ZH)).await;
    assert_in(
        &dashboard,
        "zh-CN",
        &[
            "<h1>概览</h1>",
            "<title>概览 · RoomManager 管理后台</title>",
            "个直播间在直播",
            ">IP 封禁</a>",
        ],
    );
    let dashboard_en = signed_page(&site.server, "/admin", "rm_admin", &admin, None).await;
    assert_in(&dashboard_en, "en", &["<h1>Dashboard</h1>", "live rooms"]);
    let users = signed_page(&site.server, "/admin/users", "rm_admin", &admin, Some(ZH)).await;
    assert_in(
        &users,
        "zh-CN",
        &["<h1>用户</h1>", "注册时间（UTC）", "个用户</p>", "年"],
    );
    let users_en = signed_page(&site.server, "/admin/users", "rm_admin", &admin, None).await;
    assert_in(&users_en, "en", &["<h1>Users</h1>", "Signed up (UTC)"]);
    assert!(!users_en.text.contains("注册时间"));
}

/// The live room in Chromium with a Chinese browser: room.js says the phase and a refused
/// message in Chinese, translated by the error's code.
#[tokio::test]
async fn the_live_room_script_speaks_chinese_in_a_chinese_browser() {
    if !webdriver::available() {
        return;
    }
    let site =
        Site::start_with(|c| c.media.watch_origins = vec!["http://scripted".to_owned()]).await;
    let (_host, room) = site.live_host("zhlive").await;
    let browser = Browser::start().await;
    // The cookie the footer's switch sets stands for the browser's language.
    browser.goto(&site.server.url("/lang/zh-CN")).await;
    browser
        .goto(&site.server.url(&format!("/room/{room}")))
        .await;
    browser.wait_for_text("#phase", "直播中").await;
    assert_eq!(
        browser
            .execute("return document.documentElement.lang;")
            .await,
        "zh-CN"
    );
    // A guest's like is refused by the server (`registered_only`, in English); the page says it
    // in Chinese. The button is not offered to guests, so the page's own socket sends it.
    browser
        .execute(
            "document.dispatchEvent(new CustomEvent('rm:send', {detail: {type: 'like'}})); \
             return true;",
        )
        .await;
    browser
        .wait_for_text("#notice", "游客只能观看；注册后才能这样做。")
        .await;
    assert!(browser.csp_violations().await.is_empty());
}

/// An admin API write with the bearer `token`.
async fn admin_write(
    server: &TestServer,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method name");
    send(
        server
            .client
            .request(method, server.url(path))
            .bearer_auth(token)
            .json(&body),
    )
    .await
}

#[tokio::test]
async fn every_admin_page_and_the_labels_the_server_builds_speak_the_readers_language() {
    let site = Site::start().await;
    let (_host, _room) = site.live_host("zhlivehost").await;
    let (fan_id, _fan_token) = site.user("zhfan").await;
    make_admin(&site.server, "zhadmin2");
    let admin = admin_token(&site.server.url(""), "zhadmin2", ADMIN_PASSWORD).await;
    // A chat ban until lifted, an IP ban in force and one lifted: the labels the server builds.
    admin_write(
        &site.server,
        &admin,
        "POST",
        &format!("/api/v1/admin/users/{fan_id}/bans"),
        json!({"scope": "chat", "reason": "spam"}),
    )
    .await
    .expect(StatusCode::CREATED);
    admin_write(
        &site.server,
        &admin,
        "POST",
        "/api/v1/admin/ip-bans",
        json!({"range": "203.0.113.0/24", "reason": "flood"}),
    )
    .await
    .expect(StatusCode::CREATED);
    let lifted = admin_write(
        &site.server,
        &admin,
        "POST",
        "/api/v1/admin/ip-bans",
        json!({"range": "198.51.100.7", "reason": "mistake"}),
    )
    .await
    .expect(StatusCode::CREATED)
    .json()["id"]
        .as_u64()
        .expect("an id");
    admin_write(
        &site.server,
        &admin,
        "DELETE",
        &format!("/api/v1/admin/ip-bans/{lifted}?reason=appeal"),
        json!({}),
    )
    .await
    .expect(StatusCode::NO_CONTENT);

    let user_page = format!("/admin/users/{fan_id}");
    // (page, Chinese it shows, English it shows)
    let pages: [(&str, &[&str], &[&str]); 9] = [
        (
            &user_page,
            &[
                "最近登录记录",
                "<td>聊天</td>",
                "直到解除",
                ">解除聊天封禁</button>",
                "<td>密码</td>",
                "年",
            ],
            &[
                "Latest logins",
                "<td>chat</td>",
                "until lifted",
                ">Lift the chat ban</button>",
                "<td>password</td>",
            ],
        ),
        (
            "/admin/users",
            &["已封禁： 聊天，直到解除"],
            &["banned: chat until lifted"],
        ),
        (
            "/admin/rooms",
            &[
                "<h1>正在直播的直播间</h1>",
                "1 个正在直播",
                "关闭直播间",
                "年",
            ],
            &["<h1>Live rooms</h1>", "1 live now", "Close the room"],
        ),
        (
            "/admin/records",
            &["<h1>录像</h1>", "0 个录像", "没有匹配的录像。"],
            &[
                "<h1>Recordings</h1>",
                "0 recordings",
                "No recording matches.",
            ],
        ),
        (
            // Chart titles and table captions translated; the CSV's column names stay.
            "/admin/stats",
            &[
                "<h1>统计</h1>",
                "<title>每日登录次数（注册用户和游客）</title>",
                "<summary>每日登录 · ",
                "<th>date</th>",
            ],
            &[
                "<title>Logins per day (registered and guests)</title>",
                "<summary>Logins per day · ",
                "<th>date</th>",
            ],
        ),
        (
            "/admin/audit",
            &["<h1>审计日志</h1>", "条记录", "<td>ip_unban</td>", "年"],
            &["<h1>Audit log</h1>", " entries", "<td>ip_unban</td>"],
        ),
        (
            "/admin/mail",
            &["发送方式：", ">发送测试邮件</button>"],
            &["Transport:", ">Send a test mail</button>"],
        ),
        (
            "/admin/downloads",
            &["添加文件", ">上传</button>", "还没有文件。"],
            &["Add a file", ">Upload</button>", "No files yet."],
        ),
        (
            "/admin/ip-bans",
            &["封禁地址或网段", "<td>直到解除</td>", " 解除</td>", "年"],
            &[
                "Ban an address or range",
                "<td>until lifted</td>",
                "<td>lifted ",
            ],
        ),
    ];
    for (path, chinese, english) in pages {
        let zh = signed_page(&site.server, path, "rm_admin", &admin, Some(ZH)).await;
        assert_in(&zh, "zh-CN", chinese);
        let en = signed_page(&site.server, path, "rm_admin", &admin, None).await;
        assert_in(&en, "en", english);
        for text in chinese.iter().filter(|t| !t.is_ascii()) {
            assert!(
                !en.text.contains(text),
                "{text:?} in English {path}: {}",
                en.text
            );
        }
    }

    // The site's main nav is named in the reader's language.
    let home = page(&site.server, "/", &[("accept-language", ZH)]).await;
    assert_in(&home, "zh-CN", &["<nav aria-label=\"主导航\">"]);
    let home_en = page(&site.server, "/", &[]).await;
    assert_in(&home_en, "en", &["<nav aria-label=\"Main\">"]);
}
