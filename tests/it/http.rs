//! The HTTP surface every later feature builds on: health, pages, assets, errors, limits, metrics.

use reqwest::header::{
    HeaderValue, ACCEPT, ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, VARY,
};
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::TestServer;

#[tokio::test]
async fn healthz_reports_version_and_store() {
    let server = TestServer::start().await;
    let res = server.get("/healthz").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["store"]["status"], "ok");
    assert_eq!(body["store"]["schema_version"], 5);
    assert_eq!(body["urls"]["mode"], "per_request", "{body}");
    assert_eq!(body["urls"]["public_url"], Value::Null, "{body}");
    assert_eq!(body["store"]["instance_id"].as_str().unwrap().len(), 16);
    server.stop().await;
}

#[tokio::test]
async fn the_home_page_is_html_with_the_live_room_list() {
    let server = TestServer::start().await;
    let res = server.get("/").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(
        html.contains("<title>Live now · RoomManager</title>"),
        "{html}"
    );
    assert!(html.contains("No one is live right now"), "{html}");
    assert!(html.contains("/assets/style.css"), "{html}");
}

#[tokio::test]
async fn assets_have_content_types_and_cache_headers() {
    let server = TestServer::start().await;
    for (path, mime) in [
        ("/assets/style.css", "text/css"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        let res = server.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(res.headers()[CONTENT_TYPE], mime, "{path}");
        assert!(res.headers()[CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("max-age="));
        let etag = res.headers()[ETAG].clone();
        let body = res.bytes().await.unwrap();
        let on_disk = std::fs::read(format!("{}{}", env!("CARGO_MANIFEST_DIR"), path)).unwrap();
        assert_eq!(
            body.as_ref(),
            on_disk.as_slice(),
            "{path} is served as embedded"
        );

        // Revalidation with the tag; If-None-Match compares weakly (RFC 9110 §13.1.2), so a
        // cache that weakened the tag, or lists it among others, revalidates too; another tag
        // gets the asset.
        let tag = etag.to_str().unwrap();
        for (asked, status) in [
            (tag.to_owned(), StatusCode::NOT_MODIFIED),
            (format!("W/{tag}"), StatusCode::NOT_MODIFIED),
            (format!("\"other\", {tag}"), StatusCode::NOT_MODIFIED),
            ("\"other\"".to_owned(), StatusCode::OK),
        ] {
            let res = server
                .client
                .get(server.url(path))
                .header(IF_NONE_MATCH, asked.as_str())
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), status, "{path} with If-None-Match {asked}");
            assert_eq!(
                res.headers()[ETAG],
                etag,
                "{path} with If-None-Match {asked}"
            );
        }
    }
}

#[tokio::test]
async fn text_assets_are_gzipped_for_browsers_that_take_it() {
    use std::io::Read;
    let server = TestServer::start().await;
    let fetch = |path: &'static str, accept: &'static str, etag: Option<HeaderValue>| {
        let mut request = server.client.get(server.url(path));
        if !accept.is_empty() {
            request = request.header(ACCEPT_ENCODING, accept);
        }
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        request.send()
    };
    for path in ["/assets/style.css", "/assets/room.js"] {
        let on_disk = std::fs::read(format!("{}{}", env!("CARGO_MANIFEST_DIR"), path)).unwrap();
        let res = fetch(path, "gzip, deflate, br", None).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(res.headers()[CONTENT_ENCODING], "gzip", "{path}");
        assert_eq!(res.headers()[VARY], "accept-encoding", "{path}");
        let gz_etag = res.headers()[ETAG].clone();
        let body = res.bytes().await.unwrap();
        assert!(
            body.len() < on_disk.len() / 2,
            "{path}: {} bytes",
            body.len()
        );
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(body.as_ref())
            .read_to_end(&mut plain)
            .expect("the body is gzip");
        assert_eq!(plain, on_disk, "{path} unzips to the embedded file");

        // The two encodings are two representations: each has its own ETag.
        let res = fetch(path, "gzip;q=0, identity", None).await.unwrap();
        assert!(res.headers().get(CONTENT_ENCODING).is_none(), "{path}");
        let etag = res.headers()[ETAG].clone();
        assert_ne!(etag, gz_etag, "{path}");
        assert_eq!(res.bytes().await.unwrap().as_ref(), on_disk.as_slice());
        let again = fetch(path, "gzip", Some(gz_etag.clone())).await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        let stale = fetch(path, "gzip", Some(etag)).await.unwrap();
        assert_eq!(
            stale.status(),
            StatusCode::OK,
            "{path}: the plain ETag is not the gzip one"
        );
    }
    // A small file is sent as it is, whatever the browser takes: gzip would save nothing.
    let res = fetch("/assets/favicon.svg", "gzip", None).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers().get(CONTENT_ENCODING).is_none(),
        "a small icon is sent as it is"
    );
}

#[tokio::test]
async fn unknown_assets_and_path_tricks_find_nothing() {
    let server = TestServer::start().await;
    for path in [
        "/assets/nope.css",
        "/assets/%2e%2e/Cargo.toml",
        "/assets/..%2fCargo.toml",
        "/assets/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/assets//etc/passwd",
    ] {
        let res = server.get(path).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let body = res.text().await.unwrap();
        assert!(
            !body.contains("[package]") && !body.contains("root:"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn not_found_is_json_for_programs_and_html_for_people() {
    let server = TestServer::start().await;

    let res = server.get("/api/v1/no-such-thing").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert!(body["error"]["message"].as_str().unwrap().len() > 5);

    let res = server.get("/no-such-page").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(html.contains("404"), "{html}");
    assert!(html.contains("href=\"/\""), "{html}");

    let res = server
        .client
        .get(server.url("/no-such-page"))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_wrong_method_is_405_in_the_error_shape() {
    let server = TestServer::start().await;
    let res = server
        .client
        .post(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413() {
    let server = TestServer::start_with(|c| c.server.max_body_bytes = 4096).await;
    for path in ["/api/v1/anything", "/healthz", "/"] {
        let res = server
            .client
            .post(server.url(path))
            .body(vec![b'x'; 4097])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
    }
    let res = server
        .client
        .post(server.url("/api/v1/anything"))
        .body(vec![b'x'; 4097])
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");

    // At the limit it is not refused for its size (here: no such route).
    let res = server
        .client
        .post(server.url("/api/v1/anything"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metrics_count_requests_by_route_in_prometheus_text() {
    let server = TestServer::start().await;
    for _ in 0..3 {
        server.get("/healthz").await;
    }
    server.get("/random/path/one").await;
    server.get("/random/path/two").await;
    let res = server.get("/metrics").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = res.text().await.unwrap();
    assert!(
        text.contains(
            "roommanager_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 3"
        ),
        "{text}"
    );
    assert!(text.contains(
        "roommanager_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 2"
    ));
    assert!(
        !text.contains("/random/path"),
        "raw paths must not become labels"
    );
    assert!(text.contains(
        "roommanager_http_request_duration_seconds_count{method=\"GET\",route=\"/healthz\"} 3"
    ));
}
