//! Comments on recordings over real HTTP: who may post (guests, unverified and chat-banned
//! users may not), what a comment may hold (length, invisible text, a position inside the
//! video), newest-first paging, deleting by the author or the host (nobody else), and the
//! danmaku's rate limit applied to comments.

use reqwest::StatusCode;
use roommanager::model::{Ban, BanScope, LoginKind, Session, TokenHash, UserId};
use roommanager::store::unix_now;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::accounts::{email_of, get, post_json, register, Reply};
use crate::accounts_login::assert_rate_limited;
use crate::records::{delete, listed};
use crate::rooms::Site;

const T: u64 = 1_795_100_000;

async fn post(site: &Site, record: u64, body: Value, token: &str) -> Reply {
    let path = format!("/api/v1/records/{record}/comments");
    post_json(&site.server, &path, &body, Some(token)).await
}

/// The comments of a page: (author nickname, text, position) each, and `total`.
async fn page(site: &Site, record: u64, query: &str) -> (Vec<(String, String, Value)>, u64) {
    let path = format!("/api/v1/records/{record}/comments{query}");
    let body = get(&site.server, &path).await.expect(StatusCode::OK).json();
    let comments = body["comments"]
        .as_array()
        .expect("a comments list")
        .iter()
        .map(|c| {
            (
                c["author"]["nickname"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                c["text"].as_str().unwrap_or_default().to_owned(),
                c["position_ms"].clone(),
            )
        })
        .collect();
    (comments, body["total"].as_u64().expect("a total"))
}

/// A session for a registered account whose email is not verified (such an account cannot log
/// in; this stands for one whose session outlived its verification), by the store call a login
/// makes.
async fn unverified_session(site: &Site, username: &str) -> String {
    let reply = register(&site.server, username, &email_of(username))
        .await
        .expect(StatusCode::CREATED);
    let user = reply.json()["user_id"].as_u64().expect("a user id");
    let token = "ab".repeat(32);
    let hash = TokenHash(
        Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    );
    let now = unix_now();
    let session = Session {
        user_id: UserId(user),
        created_at: now,
        expires_at: now + 3600,
    };
    site.server
        .app()
        .store
        .start_session(&hash, &session, LoginKind::Password, "127.0.0.1".to_owned())
        .expect("a session is stored");
    token
}

#[tokio::test]
async fn who_may_comment_and_what_a_comment_may_hold() {
    let site = Site::start().await;
    let (host, _) = site.user("com01").await;
    let (_, fan) = site.user("fan01c").await;
    let (muted_id, muted) = site.user("mute01").await;
    let id = listed(&site.server, host, "Ten seconds", T, 10);
    let hello = json!({"text": "hello"});

    let guest = site.guest().await;
    post(&site, id, hello.clone(), &guest)
        .await
        .expect_error(StatusCode::FORBIDDEN, "registered_only");
    let unverified = unverified_session(&site, "unver01").await;
    post(&site, id, hello.clone(), &unverified)
        .await
        .expect_error(StatusCode::FORBIDDEN, "email_not_verified");
    site.server
        .app()
        .rooms
        .add_ban(
            UserId(muted_id),
            Ban {
                scope: BanScope::Chat,
                reason: "rude".into(),
                created_at: 0,
                expires_at: None,
                lifted_at: None,
            },
            None,
        )
        .await
        .unwrap();
    post(&site, id, hello.clone(), &muted)
        .await
        .expect_error(StatusCode::FORBIDDEN, "chat_banned");
    post_json(
        &site.server,
        &format!("/api/v1/records/{id}/comments"),
        &hello,
        None,
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "not_logged_in");
    post(&site, 999_999, hello.clone(), &fan)
        .await
        .expect_error(StatusCode::NOT_FOUND, "record_not_found");

    for (text, code) in [
        ("".to_owned(), "empty_comment"),
        ("   \n\t ".to_owned(), "empty_comment"),
        ("x".repeat(501), "comment_too_long"),
        ("直".repeat(501), "comment_too_long"),
        ("\u{200B}".to_owned(), "invisible_characters"),
        ("\u{200D}\u{200D}".to_owned(), "invisible_characters"),
        ("evil\u{202E}gpj.exe".to_owned(), "invisible_characters"),
    ] {
        post(&site, id, json!({ "text": text }), &fan)
            .await
            .expect_error(StatusCode::BAD_REQUEST, code);
    }
    for position in [json!(10_001), json!(-1), json!(i64::MAX)] {
        post(
            &site,
            id,
            json!({"text": "there", "position_ms": position}),
            &fan,
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_position");
    }
    post(
        &site,
        id,
        json!({"text": "there", "position_ms": "soon"}),
        &fan,
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "bad_json");
    assert_eq!(page(&site, id, "").await.1, 0, "nothing refused was kept");

    // The longest comment, the end of the video, its start, and no position at all.
    let longest = "直".repeat(500);
    let posted = post(
        &site,
        id,
        json!({"text": "  the end\u{7} ", "position_ms": 10_000}),
        &fan,
    )
    .await
    .expect(StatusCode::CREATED)
    .json();
    assert_eq!(posted["text"], "the end");
    assert_eq!(posted["position_ms"], 10_000);
    assert_eq!(posted["author"]["nickname"], "fan01c");
    assert!(posted["id"].as_u64().is_some() && posted["created_at"].as_u64().is_some());
    post(&site, id, json!({"text": "start", "position_ms": 0}), &fan)
        .await
        .expect(StatusCode::CREATED);
    post(&site, id, json!({ "text": longest }), &fan)
        .await
        .expect(StatusCode::CREATED);
    let (comments, total) = page(&site, id, "").await;
    assert_eq!(total, 3);
    let fan = "fan01c".to_owned();
    assert_eq!(
        comments,
        [
            (fan.clone(), longest, Value::Null),
            (fan.clone(), "start".to_owned(), json!(0)),
            (fan, "the end".to_owned(), json!(10_000)),
        ]
    );
    let detail = get(&site.server, &format!("/api/v1/records/{id}"))
        .await
        .json();
    assert_eq!(detail["comments_count"], 3);
}

#[tokio::test]
async fn comments_page_newest_first_and_are_deleted_by_their_author_or_the_host() {
    let site = Site::start().await;
    let (host, host_token) = site.user("com02").await;
    let (_, ann) = site.user("ann02").await;
    let (_, ben) = site.user("ben02").await;
    let id = listed(&site.server, host, "Talk", T, 600);
    let mut ids = Vec::new();
    for (n, token) in [&ann, &ben, &ann, &host_token, &ben]
        .into_iter()
        .enumerate()
    {
        let body = json!({"text": format!("comment {n}"), "position_ms": n * 1000});
        let posted = post(&site, id, body, token)
            .await
            .expect(StatusCode::CREATED)
            .json();
        ids.push(posted["id"].as_u64().expect("an id"));
    }
    let texts = |page: Vec<(String, String, Value)>| -> Vec<String> {
        page.into_iter().map(|(_, text, _)| text).collect()
    };
    let (first, total) = page(&site, id, "?per_page=2").await;
    assert_eq!(
        (texts(first), total),
        (vec!["comment 4".into(), "comment 3".into()], 5)
    );
    let (second, _) = page(&site, id, "?per_page=2&page=2").await;
    assert_eq!(texts(second), ["comment 2", "comment 1"]);
    let (last, _) = page(&site, id, "?per_page=2&page=3").await;
    assert_eq!(texts(last), ["comment 0"]);
    let (beyond, total) = page(&site, id, "?per_page=2&page=4").await;
    assert!(beyond.is_empty() && total == 5);
    for bad in ["?per_page=101", "?page=0"] {
        get(&site.server, &format!("/api/v1/records/{id}/comments{bad}"))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
    get(&site.server, "/api/v1/records/999999/comments")
        .await
        .expect_error(StatusCode::NOT_FOUND, "record_not_found");

    let path = |cid: u64| format!("/api/v1/records/{id}/comments/{cid}");
    // Ann's first comment: Ben may not delete it; Ann may.
    delete(&site.server, &path(ids[0]), &ben)
        .await
        .expect_error(StatusCode::FORBIDDEN, "not_your_comment");
    delete(&site.server, &path(ids[0]), &site.guest().await)
        .await
        .expect_error(StatusCode::FORBIDDEN, "not_your_comment");
    delete(&site.server, &path(ids[0]), &ann)
        .await
        .expect(StatusCode::NO_CONTENT);
    // Ben's comment: the record's host may delete it.
    delete(&site.server, &path(ids[1]), &host_token)
        .await
        .expect(StatusCode::NO_CONTENT);
    for token in [&ann, &host_token] {
        delete(&site.server, &path(ids[0]), token)
            .await
            .expect_error(StatusCode::NOT_FOUND, "comment_not_found");
    }
    delete(
        &site.server,
        &format!("/api/v1/records/999999/comments/{}", ids[2]),
        &ann,
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "record_not_found");
    let (left, total) = page(&site, id, "").await;
    assert_eq!(
        (texts(left), total),
        (
            vec!["comment 4".into(), "comment 3".into(), "comment 2".into()],
            3
        )
    );
    let detail = get(&site.server, &format!("/api/v1/records/{id}"))
        .await
        .json();
    assert_eq!(detail["comments_count"], 3);
}

#[tokio::test]
async fn a_comment_flood_is_limited_like_danmaku_and_others_still_comment() {
    const WINDOW: u64 = 60;
    let site = Site::start_with(|c| {
        c.rooms.chat_per_window = 3;
        c.rooms.chat_window_secs = WINDOW;
    })
    .await;
    let (host, _) = site.user("com03").await;
    let (_, flood) = site.user("flood03").await;
    let (_, calm) = site.user("calm03").await;
    let id = listed(&site.server, host, "Busy", T, 60);
    for n in 0..3 {
        post(&site, id, json!({"text": format!("spam {n}")}), &flood)
            .await
            .expect(StatusCode::CREATED);
    }
    for _ in 0..20 {
        let refused = post(&site, id, json!({"text": "more spam"}), &flood).await;
        assert_rate_limited(&refused, WINDOW);
    }
    post(&site, id, json!({"text": "a calm remark"}), &calm)
        .await
        .expect(StatusCode::CREATED);
    let (comments, total) = page(&site, id, "").await;
    assert_eq!(total, 4, "three from the flood, one from the calm user");
    assert_eq!(comments[0].1, "a calm remark");
}
