//! The recordings' pages over plain HTTP (no browser): `/records` lists, searches, sorts and
//! pages the catalogue without JavaScript; `/users/{id}` shows a host's recordings;
//! `/records/{id}` is the replay page. Every title is shown escaped; unknown or bad addresses
//! and queries get error pages, and the pages keep answering after them.

use reqwest::StatusCode;
use roommanager::model::{Record, UserId};

use crate::accounts::{get, get_auth, guest_token, relaxed, verified_user, Reply};
use crate::common::TestServer;
use crate::records::{list_recording, Media};

/// 2026-11-26, a Thursday; the recordings below start a day apart from here.
const FIRST: u64 = 1_795_714_121;
const SCRIPT_TITLE: &str = "<script>alert(1)</script> night";
/// The same, as askama escapes it.
const ESCAPED: &str = "&#60;script&#62;alert(1)&#60;/script&#62; night";

/// Lists a recording of `host` titled `title` whose video is at `url`.
pub(crate) fn list_record(
    server: &TestServer,
    host: u64,
    title: &str,
    started_at: u64,
    duration_secs: u64,
    url: &str,
) -> Record {
    let stream = format!("h{host}-{started_at}");
    let media = Media {
        stream: &stream,
        url,
        thumbnail: None,
    };
    list_recording(server, host, title, started_at, duration_secs, Some(media))
}

/// The record ids of the cards on a grid page, in the order shown.
fn cards(page: &Reply) -> Vec<u64> {
    page.text
        .split("class=\"room-card record-card\" href=\"/records/")
        .skip(1)
        .map(|rest| {
            rest.split('"')
                .next()
                .and_then(|id| id.parse().ok())
                .expect("a record id in the card's link")
        })
        .collect()
}

#[track_caller]
fn assert_page(reply: &Reply, status: StatusCode, needle: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "a page: {:?}",
        reply.header("content-type")
    );
    assert!(reply.text.contains(needle), "{needle:?} in {}", reply.text);
}

#[tokio::test]
async fn the_catalogue_lists_searches_sorts_and_pages_recordings_without_javascript() {
    let server = TestServer::start_with(relaxed).await;
    let (host, _) = verified_user(&server, "pagehost").await;
    let (other, _) = verified_user(&server, "otherhost").await;
    // 26 recordings: one more page than 24 holds. The i-th is i days later and 60+i s long,
    // except the escaped one, which is the oldest and the longest.
    let script = list_record(
        &server,
        host,
        SCRIPT_TITLE,
        FIRST - 86_400,
        7_384,
        "/r/0.mp4",
    );
    let mut ids = vec![script.id.0];
    for i in 0..25u64 {
        let owner = if i % 5 == 0 { other } else { host };
        let title = format!("Session {i}");
        let record = list_record(
            &server,
            owner,
            &title,
            FIRST + i * 86_400,
            60 + i,
            "/r/x.mp4",
        );
        ids.push(record.id.0);
    }

    // Newest first, 24 a page, a link to the next page.
    let first = get(&server, "/records").await;
    assert_page(&first, StatusCode::OK, "Page 1 of 2");
    let newest: Vec<u64> = ids.iter().rev().copied().collect();
    assert_eq!(cards(&first), newest[..24]);
    assert!(
        first.text.contains("href=\"/records?page=2\""),
        "{}",
        first.text
    );
    assert!(!first.text.contains("rel=\"prev\""));
    // A card: title, host, date, h:mm:ss duration, views, and a placeholder for no thumbnail.
    assert!(first
        .text
        .contains("<strong class=\"record-title\">Session 24</strong>"));
    assert!(first.text.contains("2026-12-20"), "the date of session 24");
    assert!(first
        .text
        .contains("<span class=\"record-duration\">0:01:24</span>"));
    assert!(first
        .text
        .contains("<span class=\"record-views\">0</span> views"));
    assert!(first.text.contains("cover-placeholder"));
    assert!(
        first.text.contains("<a href=\"/records\">Recordings</a>"),
        "in the navigation"
    );

    let second = get(&server, "/records?page=2").await;
    assert_page(&second, StatusCode::OK, "Page 2 of 2");
    assert_eq!(cards(&second), newest[24..]);
    assert!(second.text.contains("href=\"/records?page=1\""));
    assert!(!second.text.contains("rel=\"next\""));
    // The escaped title: shown as text, never as markup.
    assert!(second.text.contains(ESCAPED));
    assert!(!second.text.contains("<script>alert"));
    // Past the last page: an empty grid, not an error.
    let past = get(&server, "/records?page=3").await;
    assert_page(&past, StatusCode::OK, "There are no more recordings.");
    assert!(cards(&past).is_empty());

    // Longest first; the sort is kept by the paging links and shown as selected.
    let longest = get(&server, "/records?sort=longest").await;
    assert_page(
        &longest,
        StatusCode::OK,
        "<option value=\"longest\" selected>",
    );
    assert_eq!(cards(&longest)[..3], [ids[0], ids[25], ids[24]]);
    assert!(longest
        .text
        .contains("<span class=\"record-duration\">2:03:04</span>"));
    assert!(longest
        .text
        .contains("href=\"/records?sort=longest&#38;page=2\""));
    let viewed = get(&server, "/records?sort=most_viewed&page=2").await;
    assert_page(
        &viewed,
        StatusCode::OK,
        "<option value=\"most_viewed\" selected>",
    );
    assert_eq!(cards(&viewed).len(), 2);

    // Search: by title, case-insensitive; the query stays in the box; none found is a page.
    let found = get(&server, "/records?q=SCRIPT").await;
    assert_page(&found, StatusCode::OK, "1 recording found");
    assert_eq!(cards(&found), [script.id.0]);
    assert!(found.text.contains("value=\"SCRIPT\""));
    let none = get(&server, "/records?q=nothing+like+this").await;
    assert_page(&none, StatusCode::OK, "No recording matches this search.");
    assert!(cards(&none).is_empty());
    let markup = get(&server, "/records?q=%3Cb%3Ebold").await;
    assert_page(&markup, StatusCode::OK, "value=\"&#60;b&#62;bold\"");
    assert!(!markup.text.contains("<b>bold"));

    // Bad queries are refused with a page that says why; the catalogue still answers.
    for (query, why) in [
        (
            "sort=oldest".to_owned(),
            "is newest, most_viewed or longest",
        ),
        ("page=0".to_owned(), "is a whole number from 1"),
        ("page=-1".to_owned(), "is a whole number from 1"),
        (
            "page=99999999999999999999999".to_owned(),
            "is a whole number from 1",
        ),
        (format!("q={}", "x".repeat(101)), "at most 100 characters"),
    ] {
        let refused = get(&server, &format!("/records?{query}")).await;
        assert_page(&refused, StatusCode::BAD_REQUEST, why);
    }
    assert_eq!(cards(&get(&server, "/records").await).len(), 24);
}

#[tokio::test]
async fn the_host_page_and_the_replay_page_show_their_recording_escaped() {
    let server = TestServer::start_with(relaxed).await;
    let (host, host_token) = verified_user(&server, "replayhost").await;
    let (other, viewer_token) = verified_user(&server, "replayfan").await;
    let script = list_record(&server, host, SCRIPT_TITLE, FIRST, 65, "/r/script.mp4");
    let theirs = list_record(&server, other, "Someone else", FIRST + 10, 5, "/r/else.mp4");

    // The host's page: nickname, room link, and only their recordings.
    let page = get(&server, &format!("/users/{host}")).await;
    assert_page(
        &page,
        StatusCode::OK,
        "<h1 id=\"host-name\">replayhost</h1>",
    );
    let room = server
        .app()
        .store
        .user(UserId(host))
        .expect("the store answers")
        .and_then(|u| u.room_id)
        .expect("the host's room");
    assert!(page.text.contains(&format!("href=\"/room/{}\"", room.0)));
    assert_eq!(cards(&page), [script.id.0]);
    assert!(page.text.contains(ESCAPED));
    assert!(!page.text.contains("<script>alert"));

    // The replay page: the video with the record's URL, the title escaped (also in <title>),
    // the host linked, date, duration and views; the script that runs the comments.
    let replay = get(&server, &format!("/records/{}", script.id.0)).await;
    assert_page(&replay, StatusCode::OK, "src=\"/r/script.mp4\"");
    assert!(replay
        .text
        .contains(&format!("<h1 id=\"record-title\">{ESCAPED}</h1>")));
    assert!(replay
        .text
        .contains(&format!("<title>{ESCAPED} · RoomManager</title>")));
    assert!(!replay.text.contains("<script>alert"));
    assert!(replay.text.contains(&format!(
        "<a id=\"record-host\" href=\"/users/{host}\">replayhost</a>"
    )));
    assert!(replay.text.contains("2026-11-26"));
    assert!(replay
        .text
        .contains("<span id=\"record-duration\">0:01:05</span>"));
    assert!(replay
        .text
        .contains("<script src=\"/assets/record.js\" defer></script>"));
    // A visitor is told why they cannot comment, and gets no host buttons.
    assert!(replay.text.contains("Log in to comment."));
    assert!(!replay.text.contains("id=\"comment-form\""));
    assert!(!replay.text.contains("id=\"delete\""));
    // A guest is told to register; a verified viewer gets the form; the host gets the
    // rename and delete buttons.
    let guest = get_auth(
        &server,
        &format!("/records/{}", script.id.0),
        &guest_token(&server).await,
    )
    .await;
    assert_page(&guest, StatusCode::OK, "register to comment");
    let viewer = get_auth(&server, &format!("/records/{}", script.id.0), &viewer_token).await;
    assert_page(&viewer, StatusCode::OK, "id=\"comment-form\"");
    assert!(!viewer.text.contains("id=\"delete\""));
    let own = get_auth(&server, &format!("/records/{}", script.id.0), &host_token).await;
    assert_page(&own, StatusCode::OK, "id=\"delete\"");
    assert!(own.text.contains("id=\"rename\""));
    // The host finds their recordings from their profile.
    let me = get_auth(&server, "/me", &host_token).await;
    assert_page(
        &me,
        StatusCode::OK,
        &format!("href=\"/users/{host}\">Your recordings</a>"),
    );
    let not_own = get_auth(&server, &format!("/records/{}", theirs.id.0), &host_token).await;
    assert!(!not_own.text.contains("id=\"delete\""));

    // Unknown records and users, guests (no host page) and addresses that are not ids.
    let guest_id = get_auth(&server, "/api/v1/me", &guest_token(&server).await)
        .await
        .json()["user_id"]
        .as_u64()
        .expect("the guest's id");
    for (path, status, why) in [
        (
            "/records/999999".to_owned(),
            StatusCode::NOT_FOUND,
            "no such recording",
        ),
        (
            "/users/999999".to_owned(),
            StatusCode::NOT_FOUND,
            "no such user",
        ),
        (
            format!("/users/{guest_id}"),
            StatusCode::NOT_FOUND,
            "no such user",
        ),
        (
            "/records/abc".to_owned(),
            StatusCode::BAD_REQUEST,
            "not valid",
        ),
        ("/users/-1".to_owned(), StatusCode::BAD_REQUEST, "not valid"),
    ] {
        let refused = get(&server, &path).await;
        assert_page(&refused, status, why);
    }
    // The pages still answer.
    assert_page(
        &get(&server, &format!("/records/{}", theirs.id.0)).await,
        StatusCode::OK,
        "Someone else",
    );
}
