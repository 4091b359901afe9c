//! Refused account forms over real HTTP: the words of the refusal stand under the field they are
//! about, which is marked `aria-invalid` and points at them with `aria-describedby` (a screen
//! reader reads them with the field); the other fields are not marked, and a corrected form goes
//! through. The pages' titles, labels and focus rings are checked in real Chromium by
//! `screenshots.rs`.

use reqwest::StatusCode;

use crate::accounts::{relaxed, verified_user, Reply};
use crate::admin::form_keys;
use crate::common::TestServer;
use crate::web_hardening::post_form_at;

/// Whether `page` marks the control `id` invalid, described by its error, and that error says
/// `words`.
fn field_says(page: &Reply, id: &str, words: &str) -> bool {
    let marked = format!(r#"id="{id}" aria-invalid="true" aria-describedby="{id}-error""#);
    let error = format!(r#"id="{id}-error" role="alert">{words}</p>"#);
    page.contains(&marked) && page.contains(&error)
}

#[tokio::test]
async fn a_refused_form_marks_its_field_and_says_why_under_it() {
    let server = TestServer::start_with(relaxed).await;
    verified_user(&server, "taken01").await;

    // A taken username: the username field, and only it.
    let (cookies, token) = form_keys(server.url("/register")).await;
    let taken = post_form_at(
        server.url("/register"),
        &cookies,
        &format!("csrf={token}&username=taken01&email=new01%40example.com&password=long+enough+1"),
    )
    .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.text);
    assert!(
        field_says(&taken, "username", "That username is taken."),
        "{}",
        taken.text
    );
    assert_eq!(
        taken.text.matches("aria-invalid").count(),
        1,
        "{}",
        taken.text
    );
    assert!(
        taken.contains(r#"value="new01@example.com""#),
        "the form keeps what was typed"
    );

    // A wrong password: under the password field, not the login's.
    let (cookies, token) = form_keys(server.url("/login")).await;
    let wrong = post_form_at(
        server.url("/login"),
        &cookies,
        &format!("csrf={token}&login=taken01&password=not+the+password"),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.text);
    assert!(
        field_says(&wrong, "password", "Wrong username, email or password."),
        "{}",
        wrong.text
    );
    assert_eq!(
        wrong.text.matches("aria-invalid").count(),
        1,
        "{}",
        wrong.text
    );

    // Corrected, the registration goes through; a fresh form marks nothing.
    let (cookies, token) = form_keys(server.url("/register")).await;
    let fresh = server.get("/register").await.text().await.expect("a page");
    assert!(!fresh.contains("aria-invalid"), "{fresh}");
    let done = post_form_at(
        server.url("/register"),
        &cookies,
        &format!("csrf={token}&username=new01&email=new01%40example.com&password=long+enough+1"),
    )
    .await;
    assert_eq!(done.status, StatusCode::CREATED, "{}", done.text);
    assert!(!done.contains("aria-invalid"));
}
