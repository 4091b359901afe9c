//! The admin pages' shared form pieces: a list's selects keep the choice its search was made
//! with (the first when none), its pager keeps the search and says its words, and both ban forms
//! offer the same lengths under their own field names.

use reqwest::StatusCode;

use crate::accounts::{verified_user, Reply};
use crate::admin::{admin_token, make_admin, ADMIN_PASSWORD};
use crate::admin_users::admin_page;
use crate::common::TestServer;

/// The admin page at `path`, which must show each of `texts`.
async fn showing(server: &TestServer, admin: &str, path: &str, texts: &[&str]) -> Reply {
    let page = admin_page(server, admin, path).await.expect(StatusCode::OK);
    for text in texts {
        assert!(page.contains(text), "{path} shows {text}: {}", page.text);
    }
    page
}

#[tokio::test]
async fn the_admin_lists_keep_their_search_choices_and_page_with_them() {
    let server = TestServer::start_with(crate::accounts::relaxed).await;
    make_admin(&server, "root");
    let admin = admin_token(&server.base, "root", ADMIN_PASSWORD).await;
    let (grace, _) = verified_user(&server, "grace").await;
    verified_user(&server, "heidi").await;

    let fresh = [
        r#"<option value="all" selected>Everyone</option>"#,
        r#"<option value="banned">"#,
        r#"<option value="newest" selected>"#,
        r#"<option value="last_login">"#,
    ];
    let fresh = showing(&server, &admin, "/admin/users", &fresh).await;
    assert!(!fresh.contains("per_page="), "one page: no pager links");

    let search = "/admin/users?filter=verified&sort=oldest&per_page=1";
    let chosen = [
        r#"<option value="verified" selected>"#,
        r#"<option value="all">"#,
        r#"<option value="oldest" selected>"#,
        r#"<option value="newest">"#,
        "?q=&#38;filter=verified&#38;sort=oldest&amp;page=2&amp;per_page=1\">Next</a>",
        "grace",
    ];
    let chosen = showing(&server, &admin, search, &chosen).await;
    assert!(!chosen.contains("heidi"), "oldest first, one a page");
    let back = ["sort=oldest&amp;page=1&amp;per_page=1\">Previous</a>"];
    let second = showing(&server, &admin, &format!("{search}&page=2"), &back).await;
    assert!(!second.contains(">Next</a>"), "the last page");

    let longest = [
        r#"<option value="longest" selected>"#,
        r#"<option value="newest">"#,
    ];
    showing(&server, &admin, "/admin/records?sort=longest", &longest).await;

    let user = format!("/admin/users/{grace}");
    for (path, field, until) in [
        (
            "/admin/ip-bans",
            "expires",
            "until the end of the day below (UTC)",
        ),
        (
            user.as_str(),
            "expiry",
            "until the end of the date below (UTC)",
        ),
    ] {
        let select = format!(r#"<select name="{field}">"#);
        let date = format!(r#"<option value="date">{until}</option>"#);
        let lengths = [
            select.as_str(),
            r#"<option value="1d" selected>"#,
            date.as_str(),
            r#"<input type="date" name="date">"#,
        ];
        showing(&server, &admin, path, &lengths).await;
    }
}
