//! `GET /api/v1/rooms` answers with a listing serialized once and kept until a room changes
//! (docs/BENCHMARKS.md, "HTTP: rooms listing"): every kind of change shows in the answers after it.

use serde_json::{json, Value};

use crate::accounts::{get, patch_json};
use crate::common::wait_for;
use crate::rooms::{join, Site};

/// (room id, name, audience) of each listed room, in the listing's order.
fn seen(rooms: &[Value]) -> Vec<(u64, String, u64)> {
    rooms
        .iter()
        .map(|r| {
            (
                r["room_id"].as_u64().expect("room_id"),
                r["name"].as_str().expect("name").to_owned(),
                r["audience"].as_u64().expect("audience"),
            )
        })
        .collect()
}

async fn listing_becomes(site: &Site, expected: &[(u64, &str, u64)]) {
    let expected: Vec<(u64, String, u64)> = expected
        .iter()
        .map(|(id, name, audience)| (*id, (*name).to_owned(), *audience))
        .collect();
    wait_for(|| async { (seen(&site.live_rooms().await) == expected).then_some(()) }).await;
}

#[tokio::test]
async fn the_kept_listing_follows_every_change_of_the_rooms() {
    let site = Site::start().await;
    // Read (and so kept) before anything is live.
    let empty = get(&site.server, "/api/v1/rooms").await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.headers["content-type"], "application/json");
    assert_eq!(empty.text, r#"{"rooms":[]}"#);

    let (_, token) = site.user("lister01").await;
    let mut host = site.ws(&token).await;
    host.send(json!({"type": "start_live", "title": "First"}))
        .await;
    let first = host.expect("live_started").await["room_id"]
        .as_u64()
        .expect("room id");
    // Listed as soon as the host hears it is live, as before the listing was kept.
    let listed = site.live_rooms().await;
    assert_eq!(
        seen(&listed),
        [(first, "lister01's room".to_owned(), 1)],
        "{listed:?}"
    );
    assert_eq!(listed[0]["title"], "First");
    assert_eq!(
        get(&site.server, "/api/v1/rooms").await.text,
        get(&site.server, "/api/v1/rooms").await.text,
        "nothing changed in between"
    );

    let renamed = patch_json(
        &site.server,
        "/api/v1/me/room",
        &json!({"name": "Friday jam"}),
        &token,
    )
    .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    listing_becomes(&site, &[(first, "Friday jam", 1)]).await;

    let (mut second_host, second) = site.live_host("lister02").await;
    listing_becomes(
        &site,
        &[(first, "Friday jam", 1), (second, "lister02's room", 1)],
    )
    .await;
    // A viewer in the second room puts it first (most watched).
    let mut viewer = site.ws(&site.guest().await).await;
    join(&mut viewer, second).await;
    listing_becomes(
        &site,
        &[(second, "lister02's room", 2), (first, "Friday jam", 1)],
    )
    .await;

    second_host.send(json!({"type": "stop_live"})).await;
    viewer.expect("live_stopped").await;
    assert_eq!(
        seen(&site.live_rooms().await),
        [(first, "Friday jam".to_owned(), 1)],
        "a room that stopped is gone from the next answer"
    );
}

/// `GET /api/v1/rooms` with this `Accept-Encoding`: (Content-Encoding, body as sent).
async fn listing_encoded(site: &Site, accept: &str) -> (Option<String>, Vec<u8>) {
    let answer = site
        .server
        .client
        .get(site.server.url("/api/v1/rooms"))
        .header("accept-encoding", accept)
        .send()
        .await
        .expect("the server answers");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["vary"], "accept-encoding");
    let encoding = answer
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().expect("ASCII").to_owned());
    (encoding, answer.bytes().await.expect("a body").to_vec())
}

#[tokio::test]
async fn the_listing_is_gzipped_only_for_clients_that_take_it() {
    use std::io::Read;
    let site = Site::start().await;
    for n in 0..3 {
        site.live_host(&format!("zipper{n:02}")).await;
    }
    let plain = get(&site.server, "/api/v1/rooms").await;
    assert_eq!(plain.status, 200);
    assert!(plain.headers.get("content-encoding").is_none());
    assert_eq!(seen(&site.live_rooms().await).len(), 3);

    for accept in [
        "gzip",
        "br, GZIP;q=0.5",
        "deflate, *",
        "gzip, deflate, br, zstd",
    ] {
        let (encoding, body) = listing_encoded(&site, accept).await;
        assert_eq!(encoding.as_deref(), Some("gzip"), "{accept}");
        let mut unzipped = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut unzipped)
            .expect("a gzip stream");
        assert_eq!(unzipped, plain.text, "{accept}");
    }
    // Refused, unknown or mangled: the plain JSON.
    for accept in [
        "gzip;q=0",
        "gzip; q=0.0, *",
        "br",
        "identity",
        "",
        "gzipx, ;;;, q=1",
    ] {
        let (encoding, body) = listing_encoded(&site, accept).await;
        assert_eq!(encoding, None, "{accept:?}");
        assert_eq!(body, plain.text.as_bytes(), "{accept:?}");
    }
}
