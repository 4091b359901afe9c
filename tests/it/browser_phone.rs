//! The site's header on a phone (390×844, headless Chromium against the real server): at most
//! two lines in both languages, for a visitor and for a signed-in user with a long name (the
//! longest navigation), every link in full view and focusable.

use crate::browser_room::log_in;
use crate::common::webdriver::{self, Browser};
use crate::rooms::Site;

const PHONE: (u32, u32) = (390, 844);

/// Measures the header of the page open in `browser`: its height against its line height, the
/// rows its brand and links sit on, whether the page scrolls sideways.
const MEASURE: &str = r#"
window.scrollTo(0, 0);
const header = document.querySelector("header.site-header");
const style = getComputedStyle(header);
const line = parseFloat(style.lineHeight) || 1.2 * parseFloat(style.fontSize);
const inner = header.getBoundingClientRect().height
  - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);
const items = [header.querySelector(".brand"), ...header.querySelectorAll("nav a")];
const tops = [];
for (const item of items) {
  const top = item.getBoundingClientRect().top;
  if (!tops.some((t) => Math.abs(t - top) < line / 2)) tops.push(top);
}
return {lines: inner / line, rows: tops.length, links: items.length - 1,
        pageWidth: document.documentElement.scrollWidth};
"#;

async fn check_header(browser: &Browser, site: &Site, who: &str, least_links: u64) {
    for lang in ["en", "zh-CN"] {
        browser
            .goto(&site.server.url(&format!("/lang/{lang}")))
            .await;
        let m = browser.execute(MEASURE).await;
        let number = |key: &str| {
            m[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{key} is a number: {m}"))
        };
        assert!(
            number("links") >= least_links as f64,
            "{who}, {lang}: the whole navigation: {m}"
        );
        assert!(
            number("rows") <= 2.0,
            "{who}, {lang}: brand and links on at most two rows: {m}"
        );
        assert!(
            number("lines") < 3.0,
            "{who}, {lang}: the header is less than three lines high: {m}"
        );
        // Every link is in full view (none wrapped away or cut off) and takes the focus.
        let unseen = browser
            .execute(
                "const box = document.querySelector('header.site-header').getBoundingClientRect(); \
                 return [...document.querySelectorAll('header nav a')].filter((a) => { \
                   a.focus(); const r = a.getBoundingClientRect(); \
                   return document.activeElement !== a || r.width === 0 || r.left < box.left \
                     || r.right > box.right || r.bottom > box.bottom; \
                 }).map((a) => a.textContent);",
            )
            .await;
        assert_eq!(
            unseen,
            serde_json::json!([]),
            "{who}, {lang}: links out of view"
        );
        assert!(
            number("pageWidth") <= f64::from(PHONE.0),
            "{who}, {lang}: nothing scrolls sideways: {m}"
        );
    }
}

#[tokio::test]
async fn the_phone_header_takes_at_most_two_lines_in_both_languages() {
    if !webdriver::available() {
        return;
    }
    let site = Site::start().await;
    site.user("alexandra_wonderland_2026").await;
    let browser = Browser::start().await;
    browser.set_viewport(PHONE.0, PHONE.1, true).await;

    // A visitor: Live now, Recordings, Downloads, Log in, Register.
    check_header(&browser, &site, "a visitor", 5).await;
    // Signed in with a long name: Live now, Recordings, My room, Downloads, the name, Log out.
    log_in(&browser, &site.server, "alexandra_wonderland_2026").await;
    check_header(&browser, &site, "a signed-in user", 6).await;
}
