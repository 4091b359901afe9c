//! A LAN install with no `server.public_url`: every URL the server hands out works from the
//! address the person reached it by (here two loopback addresses stand for two machines'
//! views of the server), nothing stored names a host, a forged `Host` header never reaches an
//! email, and nginx's callbacks need the secret even from this machine.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::accounts::{outbox_link, outbox_links, relaxed, verified_user, PASSWORD};
use crate::common::tools::{self, Tool};
use crate::common::ws::WsClient;
use crate::common::{spare_port, TestServer};
use crate::media_rtmp::push;

/// The server as seen from `ip` (both are this machine; the server listens on 0.0.0.0).
fn base_at(server: &TestServer, ip: &str) -> String {
    server.base.replacen("127.0.0.1", ip, 1)
}

async fn push_view(base: &str, token: &str) -> Value {
    let res = reqwest::Client::new()
        .get(format!("{base}/api/v1/me/push"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// Waits until `base` + `watch_url` is a playlist whose newest segment is served too.
async fn assert_playable(base: &str, watch_url: &str) {
    let client = reqwest::Client::new();
    let playlist_url = format!("{base}{watch_url}");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let res = client.get(&playlist_url).send().await.unwrap();
        if res.status() == StatusCode::OK {
            let playlist = res.text().await.unwrap();
            if let Some(segment) = playlist.lines().rev().find(|l| l.ends_with(".ts")) {
                let dir = playlist_url.rsplit_once('/').unwrap().0;
                let seg = client.get(format!("{dir}/{segment}")).send().await.unwrap();
                assert_eq!(seg.status(), StatusCode::OK, "{dir}/{segment}");
                assert!(!seg.bytes().await.unwrap().is_empty());
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{playlist_url} never became playable"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Fetches `base` + `path` and returns the body.
async fn fetch(base: &str, path: &str) -> Vec<u8> {
    let res = reqwest::get(format!("{base}{path}")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{base}{path}");
    res.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn every_url_works_from_the_address_it_was_asked_from_and_recordings_outlive_addresses() {
    if !tools::require(&[Tool::Nginx, Tool::RtmpModule, Tool::Ffmpeg, Tool::Ffprobe]) {
        return;
    }
    let rtmp_port = spare_port();
    let server = TestServer::start_bound("0.0.0.0:0", |c| {
        relaxed(c);
        c.media.rtmp.manage_nginx = true;
        c.media.rtmp.rtmp_listen = ([0, 0, 0, 0], rtmp_port).into();
        c.rooms.record_delay_secs = 1;
    })
    .await;
    let (_, token) = verified_user(&server, "lanhost").await;
    let one = base_at(&server, "127.0.0.1");
    let two = base_at(&server, "127.0.0.2");

    // The push URL names the server the way each request reached it.
    for (base, ip) in [(&one, "127.0.0.1"), (&two, "127.0.0.2")] {
        let view = push_view(base, &token).await;
        let expected = format!("rtmp://{ip}:{rtmp_port}/live");
        assert_eq!(view["server"], expected.as_str(), "{view}");
        assert!(
            view["push_url"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{expected}/")),
            "{view}"
        );
    }

    // The host goes live through the second address and pushes to the URL it was given there.
    let mut host = WsClient::connect(&two, &token).await;
    host.send(json!({"type": "start_live", "title": "LAN"}))
        .await;
    let started = host.expect("live_started").await;
    let push_url = started["push_url"].as_str().unwrap().to_owned();
    assert!(
        push_url.starts_with(&format!("rtmp://127.0.0.2:{rtmp_port}/live/")),
        "{started}"
    );
    let watch_url = started["watch_url"].as_str().unwrap().to_owned();
    assert!(watch_url.starts_with("/hls/"), "a path: {started}");
    let mut viewer = WsClient::connect(&one, &token).await;
    viewer
        .send(json!({"type": "join_room", "room_id": started["room_id"]}))
        .await;
    assert_eq!(
        viewer.expect("room_info").await["watch_url"],
        watch_url.as_str(),
        "every viewer gets the same path"
    );
    let mut ffmpeg = push(&push_url, 8, 320, 180, 440);
    for base in [&one, &two] {
        assert_playable(base, &watch_url).await;
    }
    let status = tokio::time::timeout(Duration::from_secs(30), ffmpeg.wait())
        .await
        .expect("the push ends")
        .unwrap();
    assert!(status.success(), "the push failed");
    host.send(json!({"type": "close_room"})).await;
    viewer.expect("room_closed").await;

    // The recording keeps a path, and plays from either address.
    let record = crate::common::wait_for(|| async {
        server.app().store.records().unwrap().into_iter().next()
    })
    .await;
    assert!(
        record.url.starts_with("/records/files/") && record.url.ends_with(".mp4"),
        "no host stored: {}",
        record.url
    );
    let bytes = fetch(&one, &record.url).await;
    assert!(bytes.len() > 10_000, "{} bytes", bytes.len());
    assert_eq!(fetch(&two, &record.url).await, bytes);

    // The server moves to another port (and nginx is off): the stored recording still plays.
    drop(host);
    drop(viewer);
    let data = server.stop_keep_data().await;
    let moved = TestServer::start_bound_in("0.0.0.0:0", data, relaxed).await;
    let record_again = moved.app().store.records().unwrap().remove(0);
    assert_eq!(record_again.url, record.url);
    assert_eq!(
        fetch(&base_at(&moved, "127.0.0.2"), &record.url).await,
        bytes
    );
    moved.stop().await;
}

#[tokio::test]
async fn email_links_name_this_machine_and_never_a_forged_host() {
    let server = TestServer::start_bound("0.0.0.0:0", relaxed).await;
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    let client = reqwest::Client::new();
    let register = |base: String, host: Option<&'static str>, name: &'static str| {
        let mut request = client
            .post(format!("{base}/api/v1/register"))
            .json(&json!({"username": name, "password": PASSWORD,
                          "email": format!("{name}@example.com")}));
        if let Some(host) = host {
            request = request.header("host", host);
        }
        async move {
            let res = request.send().await.unwrap();
            assert_eq!(res.status(), StatusCode::CREATED);
        }
    };

    // Reached as 127.0.0.2: the link leads back there.
    register(base_at(&server, "127.0.0.2"), None, "lanmail2").await;
    let link = outbox_link(&server, "lanmail2@example.com").await;
    assert!(
        link.starts_with(&format!("http://127.0.0.2:{port}/verify?token=")),
        "{link}"
    );

    // A forged Host: the link names this machine's own address instead, with the real port.
    let own = roommanager::site::lan_addresses()
        .into_iter()
        .next()
        .map_or("127.0.0.1".to_owned(), |ip| match ip {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        });
    for (forged, name) in [
        ("evil.example", "forged1"),
        ("evil.example:8080", "forged2"),
        ("203.0.113.9", "forged3"),
    ] {
        register(server.base.clone(), Some(forged), name).await;
        let link = outbox_link(&server, &format!("{name}@example.com")).await;
        assert!(
            link.starts_with(&format!("http://{own}:{port}/verify?token=")),
            "Host {forged}: {link}"
        );
    }
    // The resend takes the same care.
    let res = client
        .post(format!("{}/api/v1/register/resend", server.base))
        .header("host", "evil.example")
        .json(&json!({"username": "forged1", "email": "forged1@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let links = outbox_links(&server, "forged1@example.com", 2).await;
    assert!(
        links.iter().all(|l| !l.contains("evil.example")),
        "{links:?}"
    );
    // The link from the forged request still works for its owner, at this machine's address.
    let verified = reqwest::get(format!(
        "{}{}",
        server.base,
        &links[1][links[1].find("/verify").unwrap()..]
    ))
    .await
    .unwrap();
    assert_eq!(verified.status(), StatusCode::OK);
    server.stop().await;
}

/// The live id and code of a room's host stream, from a host that just went live.
pub(crate) async fn live_host(server: &TestServer, name: &str) -> (WsClient, String, String) {
    let (_, token) = verified_user(server, name).await;
    let mut host = WsClient::connect(&server.base, &token).await;
    host.send(json!({"type": "start_live"})).await;
    let push_url = host.expect("live_started").await["push_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let (path, code) = push_url.split_once("?code=").unwrap();
    let live_id = path.rsplit('/').next().unwrap().to_owned();
    (host, live_id, code.to_owned())
}

pub(crate) async fn hook(
    server: &TestServer,
    which: &str,
    secret: Option<&str>,
    form: &str,
) -> StatusCode {
    let query = secret.map_or(String::new(), |s| format!("?secret={s}"));
    server
        .client
        .post(server.url(&format!("/hooks/rtmp/{which}{query}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn rtmp_callbacks_need_the_secret_even_from_this_machine() {
    let server = TestServer::start_with(relaxed).await;
    let secret = std::fs::read_to_string(server.data.path().join("nginx/conf/hook.secret"))
        .expect("a hook secret is generated at first start");
    assert!(secret.len() >= 32, "{secret}");
    let (mut host, live_id, code) = live_host(&server, "hookhost").await;
    let publish = format!("app=live&name={live_id}&code={code}&addr=127.0.0.1");

    // From loopback, without or with a wrong secret: refused, nothing changes.
    assert_eq!(
        hook(&server, "on_publish", None, &publish).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        hook(&server, "on_publish", Some("wrong"), &publish).await,
        StatusCode::FORBIDDEN
    );
    host.expect_none("on_air", Duration::from_millis(500)).await;

    // With the secret (what nginx sends): the publish is accepted and the room is on the air.
    assert_eq!(
        hook(&server, "on_publish", Some(&secret), &publish).await,
        StatusCode::OK
    );
    assert_eq!(host.expect("on_air").await["on_air"], true);

    // A forged "publish done" from this machine cannot take the room off the air.
    let done = format!("app=live&name={live_id}");
    assert_eq!(
        hook(&server, "on_publish_done", None, &done).await,
        StatusCode::FORBIDDEN
    );
    host.expect_none("on_air", Duration::from_millis(500)).await;
    assert_eq!(
        hook(&server, "on_publish_done", Some(&secret), &done).await,
        StatusCode::OK
    );
    assert_eq!(host.expect("on_air").await["on_air"], false);

    // The secret survives a restart (nginx's config keeps it).
    let data = server.stop_keep_data().await;
    let again = TestServer::start_in(data, relaxed).await;
    let kept = std::fs::read_to_string(again.data.path().join("nginx/conf/hook.secret")).unwrap();
    assert_eq!(kept, secret);
    again.stop().await;
}

/// `--listen [::]:PORT`: nginx reaches the hooks over IPv4 loopback, which the server sees as
/// `::ffff:127.0.0.1`; pushes are accepted as on any other listener.
#[tokio::test]
async fn a_server_listening_on_ipv6_any_accepts_pushes() {
    if !tools::require(&[Tool::Nginx, Tool::RtmpModule, Tool::Ffmpeg]) {
        return;
    }
    let server = TestServer::start_bound("[::]:0", |c| {
        relaxed(c);
        c.media.rtmp.manage_nginx = true;
    })
    .await;
    let (_, token) = verified_user(&server, "v6host").await;
    let mut host = WsClient::connect(&server.base, &token).await;
    host.send(json!({"type": "start_live"})).await;
    let push_url = host.expect("live_started").await["push_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(push_url.starts_with("rtmp://127.0.0.1:"), "{push_url}");
    let mut ffmpeg = push(&push_url, 30, 320, 180, 440);
    assert_eq!(host.expect("on_air").await["on_air"], true);
    let _ = ffmpeg.kill().await;
    host.send(json!({"type": "close_room"})).await;
    server.stop().await;
}
