//! The home page's cache over real HTTP: a visitor without a session gets the page as built at
//! the last change of what it shows, so every change of the live rooms and of the recordings
//! shows on the very next request; languages and sessions never mix; the gzipped page is the
//! plain one; invented languages cannot grow the cache (`roommanager_home_page_builds_total`
//! counts the pages built, one per language and change).

use std::io::Read;

use reqwest::header::{ACCEPT_ENCODING, ACCEPT_LANGUAGE, CONTENT_ENCODING, COOKIE, VARY};
use reqwest::{RequestBuilder, StatusCode};
use roommanager::model::{RecordId, UserId};
use roommanager::store::{unix_now, WatchDelta};
use serde_json::json;

use crate::accounts::{patch_json, send};
use crate::admin::{admin_token, make_admin, ADMIN_PASSWORD};
use crate::common::{wait_for, TestServer};
use crate::connections::metric;
use crate::records::{delete, list_recording, listed, Media};
use crate::rooms::{join, Site};

/// A home page as its reader got it: the body (decoded if it came gzipped) and whether it came
/// gzipped.
struct Home {
    html: String,
    gzipped: bool,
}

async fn home_of(request: RequestBuilder) -> Home {
    let answer = request.send().await.expect("the server answers");
    assert_eq!(answer.status(), StatusCode::OK);
    let vary = answer.headers()[VARY].to_str().expect("ASCII").to_owned();
    for varies in ["accept-encoding", "accept-language", "cookie"] {
        assert!(vary.contains(varies), "{vary}");
    }
    let gzipped = answer
        .headers()
        .get(CONTENT_ENCODING)
        .is_some_and(|v| v == "gzip");
    let body = answer.bytes().await.expect("a body");
    let html = if gzipped {
        let mut html = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut html)
            .expect("a gzip stream of UTF-8");
        html
    } else {
        String::from_utf8(body.to_vec()).expect("UTF-8")
    };
    Home { html, gzipped }
}

/// `GET /` without a session, in English, as wrk and curl ask (no gzip).
async fn anonymous(server: &TestServer) -> String {
    home_of(server.client.get(server.url("/"))).await.html
}

async fn builds(server: &TestServer, lang: &str) -> u64 {
    metric(
        server,
        &format!("roommanager_home_page_builds_total{{lang=\"{lang}\"}}"),
    )
    .await
}

/// The card linking to `href` on a home page (a live room's or a recording's), if it has one.
fn card<'a>(html: &'a str, href: &str) -> Option<&'a str> {
    let start = html.find(&format!("href=\"{href}\">"))?;
    let len = html[start..].find("</a>")?;
    Some(&html[start..start + len])
}

#[tokio::test]
async fn an_anonymous_visitor_sees_every_change_of_the_live_rooms_on_the_next_request() {
    let site = Site::start().await;
    let s = &site.server;
    let empty = anonymous(s).await;
    assert!(
        empty.contains("<p class=\"empty\">No one is live right now"),
        "{empty}"
    );
    assert_eq!(anonymous(s).await, empty);
    assert_eq!(builds(s, "en").await, 1, "a page unchanged is built once");

    let (_, token) = site.user("cache01").await;
    let mut host = site.ws(&token).await;
    host.send(json!({"type": "start_live"})).await;
    let room = host.expect("live_started").await["room_id"]
        .as_u64()
        .expect("room id");
    // As soon as the host hears it is live; a crowd arriving at once gets one page built.
    let mut crowd = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (client, url) = (s.client.clone(), s.url("/"));
        crowd.spawn(async move { home_of(client.get(url)).await.html });
    }
    let pages = crowd.join_all().await;
    assert_eq!(builds(s, "en").await, 2, "one build for the whole crowd");
    let live = anonymous(s).await;
    assert!(pages.iter().all(|page| *page == live));
    let shown = card(&live, &format!("/room/{room}")).expect("the room's card");
    assert!(shown.contains("cache01&#39;s room"), "{shown}");
    assert!(shown.contains("1 watching"), "{shown}");
    assert!(
        !live.contains("<p class=\"empty\">No one is live right now"),
        "{live}"
    );

    let mut viewer = site.ws(&site.guest().await).await;
    join(&mut viewer, room).await;
    wait_for(|| async { (site.live_rooms().await[0]["audience"] == 2).then_some(()) }).await;
    let page = anonymous(s).await;
    assert!(card(&page, &format!("/room/{room}"))
        .expect("the room's card")
        .contains("2 watching"));

    host.send(json!({"type": "stop_live"})).await;
    viewer.expect("live_stopped").await;
    let ended = anonymous(s).await;
    assert!(card(&ended, &format!("/room/{room}")).is_none(), "{ended}");
    assert!(
        ended.contains("<p class=\"empty\">No one is live right now"),
        "{ended}"
    );

    // Live again under a new title (a live session's title is set when it starts).
    host.send(json!({"type": "start_live", "title": "Encore <& more>"}))
        .await;
    host.expect("live_started").await;
    let again = anonymous(s).await;
    let shown = card(&again, &format!("/room/{room}")).expect("the room's card");
    assert!(
        shown.contains("Encore &#60;&#38; more&#62;"),
        "escaped: {shown}"
    );
}

#[tokio::test]
async fn recordings_on_the_home_page_follow_every_change_at_once() {
    let site = Site::start().await;
    let s = &site.server;
    let (host, host_token) = site.user("rec01").await;
    let first = anonymous(s).await;
    assert!(first.contains("No recordings yet."), "{first}");

    let now = unix_now();
    let older = listed(s, host, "Morning set", now - 7200, 65);
    let newer = list_recording(
        s,
        host,
        "Evening set",
        now - 3600,
        3725,
        Some(Media {
            stream: "evening",
            url: "/records/files/evening/a.mp4",
            thumbnail: Some("/records/files/evening/a.jpg"),
        }),
    )
    .id
    .0;
    let page = anonymous(s).await;
    let card_of_newer =
        card(&page, &format!("/records/{newer}")).expect("the new recording's card");
    for shown in [
        "Evening set",
        "rec01",
        "src=\"/records/files/evening/a.jpg\"",
        "1:02:05",
        "<span class=\"record-views\">0</span>",
    ] {
        assert!(card_of_newer.contains(shown), "{shown}: {card_of_newer}");
    }
    assert!(
        page.find(&format!("/records/{newer}\"")) < page.find(&format!("/records/{older}\"")),
        "newest first: {page}"
    );

    let renamed = patch_json(
        s,
        &format!("/api/v1/records/{newer}"),
        &json!({"title": "Evening & encore"}),
        &host_token,
    )
    .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
    let page = anonymous(s).await;
    let card_of_newer = card(&page, &format!("/records/{newer}")).expect("the card");
    assert!(
        card_of_newer.contains("Evening &#38; encore"),
        "{card_of_newer}"
    );

    // A view counted, as the watch statistics' batch writes it.
    s.app()
        .store
        .add_watching(&[(
            (RecordId(newer), UserId(host)),
            WatchDelta {
                watched_ms: 1000,
                counted_at: Some(now),
                last_at: now,
            },
        )])
        .expect("the batch is written");
    let page = anonymous(s).await;
    let card_of_newer = card(&page, &format!("/records/{newer}")).expect("the card");
    assert!(
        card_of_newer.contains("<span class=\"record-views\">1</span>"),
        "{card_of_newer}"
    );

    let nickname = patch_json(s, "/api/v1/me", &json!({"nickname": "Zora"}), &host_token).await;
    assert_eq!(nickname.status, StatusCode::OK, "{}", nickname.text);
    let page = anonymous(s).await;
    for record in [older, newer] {
        let shown = card(&page, &format!("/records/{record}")).expect("the card");
        assert!(shown.contains("Zora"), "{shown}");
    }

    delete(s, &format!("/api/v1/records/{older}"), &host_token)
        .await
        .expect(StatusCode::NO_CONTENT);
    let page = anonymous(s).await;
    assert!(
        card(&page, &format!("/records/{older}")).is_none(),
        "{page}"
    );
    assert!(
        card(&page, &format!("/records/{newer}")).is_some(),
        "{page}"
    );

    // The host's account is deleted; the recording is kept, without the host's name.
    make_admin(s, "root");
    let admin = admin_token(&s.base, "root", ADMIN_PASSWORD).await;
    send(
        s.client
            .delete(s.url(&format!("/api/v1/admin/users/{host}")))
            .bearer_auth(&admin),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let page = anonymous(s).await;
    let kept = card(&page, &format!("/records/{newer}")).expect("the kept recording's card");
    assert!(!kept.contains("Zora"), "{kept}");
    assert!(
        kept.contains("<span class=\"record-host\"></span>"),
        "{kept}"
    );
}

#[tokio::test]
async fn languages_never_mix_and_invented_ones_do_not_grow_the_cache() {
    let server = TestServer::start().await;
    let s = &server;
    let english = |html: &str| html.contains("<html lang=\"en\">") && html.contains("Live now");
    let chinese = |html: &str| html.contains("<html lang=\"zh-CN\">") && html.contains("正在直播");
    let ask = |accept: &str, cookie: Option<&str>| {
        let mut request = s
            .client
            .get(s.url("/"))
            .header(ACCEPT_LANGUAGE, accept)
            .header(ACCEPT_ENCODING, "gzip");
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        request
    };
    // Alternating, before and after each language's page is kept.
    for _ in 0..2 {
        let zh = home_of(ask("zh-CN,zh;q=0.9", None)).await;
        assert!(zh.gzipped);
        assert!(chinese(&zh.html) && !english(&zh.html), "{}", zh.html);
        let en = home_of(ask("en-US,en;q=0.9", None)).await;
        assert!(english(&en.html) && !chinese(&en.html), "{}", en.html);
        // The language cookie wins over Accept-Language.
        let chosen = home_of(ask("en-US", Some("lang=zh-CN"))).await;
        assert_eq!(chosen.html, zh.html);
        let chosen = home_of(ask("zh-CN", Some("lang=en"))).await;
        assert_eq!(chosen.html, en.html);
    }
    assert_eq!((builds(s, "en").await, builds(s, "zh-CN").await), (1, 1));

    // Languages nobody speaks here, malformed and oversized headers, odd cookies: each gets one
    // of the two pages, and no third page is ever built.
    let long = format!("{}zh-CN", "x-invented;q=0.1, ".repeat(400));
    let odd: Vec<(String, Option<String>)> = (0..100)
        .map(|n| (format!("x-lang-{n}, fr;q=0.{n}"), None))
        .chain([
            ("zh-TW".to_owned(), None),
            ("*".to_owned(), None),
            (";;;q=abc,,,".to_owned(), None),
            (long, None),
            ("en".to_owned(), Some("lang=de".to_owned())),
            ("en".to_owned(), Some(format!("lang={}", "z".repeat(4000)))),
        ])
        .collect();
    for (accept, cookie) in &odd {
        let page = home_of(ask(accept, cookie.as_deref())).await;
        assert!(
            english(&page.html) || chinese(&page.html),
            "{accept:.40}: {:.200}",
            page.html
        );
    }
    let built_en = builds(s, "en").await;
    let built_zh = builds(s, "zh-CN").await;
    assert_eq!(
        (built_en, built_zh),
        (1, 1),
        "every odd request was served from the two pages"
    );
    let metrics = server.get("/metrics").await.text().await.expect("metrics");
    let series = metrics
        .lines()
        .filter(|l| l.starts_with("roommanager_home_page_builds_total{"))
        .count();
    assert_eq!(series, 2, "{metrics}");
    // A well-behaved reader is still served.
    assert!(english(&home_of(ask("en", None)).await.html));
}

#[tokio::test]
async fn a_signed_in_reader_sees_their_name_and_anonymous_pages_never_do() {
    let site = Site::start().await;
    let s = &site.server;
    let (_, token) = site.user("namedreader").await;
    let guest = site.guest().await;
    let with_cookie = |value: &str| {
        s.client
            .get(s.url("/"))
            .header(COOKIE, format!("rm_session={value}"))
    };
    let anonymous_page = anonymous(s).await;
    assert!(
        anonymous_page.contains("href=\"/login\""),
        "{anonymous_page}"
    );
    assert!(
        !anonymous_page.contains("class=\"who\""),
        "{anonymous_page}"
    );

    for _ in 0..2 {
        let mine = home_of(with_cookie(&token)).await.html;
        assert!(
            mine.contains("class=\"who\" title=\"Me\">namedreader</a>"),
            "{mine}"
        );
        assert!(mine.contains("href=\"/studio\""), "{mine}");
        assert!(!mine.contains("href=\"/login\""), "{mine}");
        let by_bearer = home_of(s.client.get(s.url("/")).bearer_auth(&token))
            .await
            .html;
        assert_eq!(by_bearer, mine);
        let guests = home_of(with_cookie(&guest)).await.html;
        assert!(guests.contains("class=\"who\""), "{guests}");
        assert!(!guests.contains("namedreader"), "{guests}");
        // Anonymous pages, after and between the signed-in ones, never carry a name; a cookie
        // naming no session is anonymous, as on every page.
        for cookie in ["not-a-session", "", "rm_session=x; rm_session=y"] {
            let page = home_of(with_cookie(cookie)).await.html;
            assert_eq!(page, anonymous_page, "{cookie:?}");
        }
        assert_eq!(anonymous(s).await, anonymous_page);
    }

    // The session ends: the same cookie now reads as anonymous.
    send(
        s.client
            .post(s.url("/api/v1/logout"))
            .bearer_auth(&token)
            .header("x-rm-csrf", "1"),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert_eq!(home_of(with_cookie(&token)).await.html, anonymous_page);
}

#[tokio::test]
async fn the_gzipped_page_is_the_plain_page() {
    let site = Site::start().await;
    let s = &site.server;
    let (_, token) = site.user("zipreader").await;
    for n in 0..3 {
        site.live_host(&format!("ziphost{n:02}")).await;
    }
    let ask = |encoding: &str, token: Option<&str>| {
        let request = s.client.get(s.url("/")).header(ACCEPT_ENCODING, encoding);
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    };
    for who in [None, Some(token.as_str())] {
        let plain = home_of(ask("identity", who)).await;
        assert!(!plain.gzipped);
        assert_eq!(plain.html.matches("class=\"room-card\"").count(), 3);
        for accept in ["gzip", "gzip, deflate, br, zstd", "br, GZIP;q=0.5", "*"] {
            let zipped = home_of(ask(accept, who)).await;
            assert!(zipped.gzipped, "{accept}");
            assert_eq!(zipped.html, plain.html, "{accept}");
        }
        for accept in ["gzip;q=0", "br", ""] {
            let page = home_of(ask(accept, who)).await;
            assert!(!page.gzipped, "{accept:?}");
            assert_eq!(page.html, plain.html, "{accept:?}");
        }
    }
}
