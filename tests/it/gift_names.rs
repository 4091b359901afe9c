//! Gift names in the reader's language: the room page's gift buttons and the names its script
//! maps gift messages by come from the catalogue's `names` for the page's language; the config
//! refuses names for languages the site does not speak and names too long for a button.

use reqwest::header::{ACCEPT_LANGUAGE, COOKIE};
use reqwest::StatusCode;

use crate::accounts::{send, Reply};
use crate::common::{run_command, write_file};
use crate::rooms::Site;

/// The room page as a registered viewer reading `accept` sees it.
async fn room_page(site: &Site, room: u64, token: Option<&str>, accept: &str) -> Reply {
    let mut request = site
        .server
        .client
        .get(site.server.url(&format!("/room/{room}")))
        .header(ACCEPT_LANGUAGE, accept);
    if let Some(token) = token {
        request = request.header(COOKIE, format!("rm_session={token}"));
    }
    send(request).await.expect(StatusCode::OK)
}

#[tokio::test]
async fn the_room_page_names_the_gifts_in_the_readers_language() {
    let site = Site::start().await;
    let (host, _) = site.user("gao").await;
    let room = site.room_of(host);
    let (_, viewer) = site.user("fan").await;

    let zh = room_page(&site, room, Some(&viewer), "zh-CN,zh;q=0.9").await;
    assert!(zh.contains("<html lang=\"zh-CN\">"), "{}", zh.text);
    for (id, icon, name) in [
        ("heart", "❤️", "爱心"),
        ("flower", "🌸", "鲜花"),
        ("rocket", "🚀", "火箭"),
    ] {
        assert!(
            zh.contains(&format!("data-gift=\"{id}\" title=\"{name} (")),
            "{}",
            zh.text
        );
        assert!(
            zh.contains(&format!("{icon} {name}</button>")),
            "{}",
            zh.text
        );
        assert!(
            zh.contains(&format!("<li data-gift-id=\"{id}\">{name}</li>")),
            "{}",
            zh.text
        );
    }
    assert!(!zh.text.contains("Rocket"), "{}", zh.text);

    let en = room_page(&site, room, Some(&viewer), "en-US").await;
    assert!(en.contains("🚀 Rocket</button>"), "{}", en.text);
    assert!(en.contains("<li data-gift-id=\"rocket\">Rocket</li>"));
    assert!(!en.contains("火箭"), "{}", en.text);

    // Without a session there are no gift buttons, but the script still gets the names it
    // shows other people's gifts by.
    let visitor = room_page(&site, room, None, "zh-CN").await;
    assert!(!visitor.contains("data-gift=\""), "{}", visitor.text);
    assert!(visitor.contains("<li data-gift-id=\"rocket\">火箭</li>"));
}

/// A gift catalogue of one gift with this `names` table.
fn catalogue(names: &str, name: &str) -> String {
    format!(
        "[[gifts]]\nid = \"rose\"\nname = \"{name}\"\nnames = {names}\nicon = \"🌹\"\nvalue = 2\n"
    )
}

#[test]
fn gift_names_for_unknown_languages_or_too_long_are_refused() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let long = "玫".repeat(33);
    let bad = [
        catalogue("{ \"fr\" = \"Rose\" }", "Rose"),
        catalogue("{ \"zh\" = \"玫瑰\" }", "Rose"),
        catalogue("{ \"zh-CN\" = \"\" }", "Rose"),
        catalogue(&format!("{{ \"zh-CN\" = \"{long}\" }}"), "Rose"),
    ];
    for text in &bad {
        let path = write_file(dir.path(), "bad.toml", text);
        let (status, _, err) = run_command(
            dir.path(),
            &["check-config", "--config", path.to_str().expect("UTF-8")],
        );
        assert_eq!(status.code(), Some(2), "accepted {text:?}: {err}");
        assert!(err.contains("gifts.names"), "{text:?}: {err}");
    }
    let too_long_default = catalogue("{}", &"R".repeat(33));
    let path = write_file(dir.path(), "bad.toml", &too_long_default);
    let (status, _, err) = run_command(
        dir.path(),
        &["check-config", "--config", path.to_str().expect("UTF-8")],
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("gifts.name"), "{err}");

    // A catalogue within the rules is taken, its Chinese name kept as written.
    let good = catalogue(
        &format!("{{ \"zh-CN\" = \"{}\" }}", "玫".repeat(32)),
        "Rose",
    );
    let path = write_file(dir.path(), "good.toml", &good);
    let (status, out, err) = run_command(
        dir.path(),
        &["check-config", "--config", path.to_str().expect("UTF-8")],
    );
    assert!(status.success(), "{err}");
    assert!(out.contains(&"玫".repeat(32)), "{out}");
}
