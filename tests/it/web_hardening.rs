//! The web side's smaller holes, closed: path parameters that do not parse are answered in the
//! error shape. Each refusal comes with a well-behaved request that is still served.

use reqwest::StatusCode;

use crate::accounts::{get_auth, relaxed, send, verified_user};
use crate::common::TestServer;

// ---------------------------------------------------------------------------------------------
// Path parameters that do not parse
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_path_parameters_get_the_error_shape() {
    let server = TestServer::start_with(relaxed).await;
    let (_, token) = verified_user(&server, "paula").await;
    let room = get_auth(&server, "/api/v1/me", &token).await.json()["room_id"]
        .as_u64()
        .expect("a room");
    let json_get = |path: String| {
        send(
            server
                .client
                .get(server.url(&path))
                .header("accept", "application/json"),
        )
    };
    let long = "9".repeat(5000);
    for path in [
        "/api/v1/rooms/abc".to_owned(),
        "/api/v1/rooms/%FF".to_owned(),
        "/api/v1/rooms/-1".to_owned(),
        "/api/v1/rooms/1.5".to_owned(),
        format!("/api/v1/rooms/{long}"),
        "/files/avatars/%FF%FE".to_owned(),
        "/hls/live/%C3%28/index.m3u8".to_owned(),
        "/records/files/%FF/session_1.mp4".to_owned(),
        "/assets/%FF.js".to_owned(),
        "/room/abc".to_owned(),
    ] {
        let reply = json_get(path.clone())
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_path");
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            message.starts_with("the address is not valid"),
            "{path}: {message}"
        );
        assert!(
            message.len() < 200,
            "{path}: the message stays short: {message}"
        );
    }
    let not_a_number = json_get("/api/v1/rooms/abc".to_owned()).await;
    assert!(
        not_a_number
            .text
            .contains("\\\"abc\\\" is not a valid number"),
        "{}",
        not_a_number.text
    );

    // A person gets the same as a page.
    for path in ["/room/abc", "/room/%FF", "/files/covers/%FF"] {
        let reply = send(server.client.get(server.url(path))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{path}"
        );
        assert!(
            reply.contains("the address is not valid"),
            "{path}: {}",
            reply.text
        );
    }

    // Well-formed addresses are served as before.
    json_get(format!("/api/v1/rooms/{room}"))
        .await
        .expect(StatusCode::OK);
    json_get("/api/v1/rooms/999999".to_owned())
        .await
        .expect_error(StatusCode::NOT_FOUND, "room_not_found");
    let page = send(server.client.get(server.url(&format!("/room/{room}")))).await;
    assert_eq!(page.status, StatusCode::OK);
}
