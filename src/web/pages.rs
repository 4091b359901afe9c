//! Server-rendered pages: the base layout every page shares, and the pages themselves.
//!
//! Each page's template struct sits beside its handler and is named after the page. Templates
//! live in `templates/`; askama escapes every value.

use std::fmt::Display;
use std::sync::{Arc, PoisonError, RwLock};

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;

use crate::accounts::SignedIn;
use crate::app::App;
use crate::config::GiftConfig;
use crate::gzip::{Compression, GzipTail};
use crate::i18n::Lang;
use crate::model::{RoomId, UserKind};
use crate::rooms::protocol::RoomPhase;
use crate::rooms::{LiveListing, RoomSummary};

use super::accepts_gzip;
use super::account_pages::NoticePage;
use super::auth::{MaybeSigned, PageSigned};
use super::csrf::Csrf;
use super::error::{ApiError, PageError};
use super::path::ApiPath;
use super::record_pages::{latest, Pager, RecordCard};

/// What `base.html` needs from every page, and the reader's language for every template's
/// strings ([`Speaks`]).
pub struct Layout {
    pub lang: Lang,
    pub title: String,
    pub version: &'static str,
    /// The signed-in user's nickname, for the header.
    pub user_name: Option<String>,
    /// A registered user is signed in: the header links to their room (`/studio`).
    pub registered: bool,
}

impl Layout {
    pub fn new(lang: Lang, title: impl Into<String>) -> Self {
        Self {
            lang,
            title: title.into(),
            version: env!("CARGO_PKG_VERSION"),
            user_name: None,
            registered: false,
        }
    }

    pub fn for_user(lang: Lang, title: impl Into<String>, who: Option<&SignedIn>) -> Self {
        Self {
            user_name: who.map(|w| w.user.nickname.clone()),
            registered: who.is_some_and(|w| w.user.kind == UserKind::Registered),
            ..Self::new(lang, title)
        }
    }

    /// The languages the footer's switch offers besides this page's.
    pub fn other_languages(&self) -> Vec<Lang> {
        Lang::ALL.into_iter().filter(|l| *l != self.lang).collect()
    }
}

/// The reader's language as templates use it: `{{ layout.t("key") }}`, `{{ layout.count(…) }}`
/// (catalogues in `i18n/`). Both layouts speak it, so the ~400 template call sites read the same
/// on public and admin pages. A module that derives a template holding a layout imports this
/// trait (`use super::pages::Speaks as _;`): askama's generated code calls it there.
pub trait Speaks {
    fn lang(&self) -> Lang;

    fn t(&self, key: &str) -> &'static str {
        self.lang().t(key)
    }

    /// The text of `key` with its one placeholder `{name}` filled.
    fn with(&self, key: &str, name: &str, value: impl Display) -> String {
        self.lang().fill(key, &[(name, &value)])
    }

    /// The text of `key` with its two placeholders filled.
    fn with2(
        &self,
        key: &str,
        name: &str,
        value: impl Display,
        name2: &str,
        value2: impl Display,
    ) -> String {
        self.lang().fill(key, &[(name, &value), (name2, &value2)])
    }

    /// `key.one` or `key.other` for `n` things, with `{n}` filled.
    fn count(&self, key: &str, n: impl Amount) -> String {
        self.lang().count(key, n.amount(), &[])
    }

    /// Like [`Speaks::count`], with one more placeholder `{name}` filled.
    fn count_with(&self, key: &str, n: impl Amount, name: &str, value: impl Display) -> String {
        self.lang().count(key, n.amount(), &[(name, &value)])
    }

    fn number(&self, n: impl Amount) -> String {
        self.lang().number(n.amount())
    }

    /// A `YYYY-MM-DD` day the reader's way.
    fn date(&self, iso: &str) -> String {
        self.lang().date(iso)
    }

    /// A script's words, for its `data-t-*` attributes ([`Lang::script_text`]).
    fn script_text(&self, section: &str) -> Vec<(String, &'static str)> {
        self.lang().script_text(section)
    }
}

impl Speaks for Layout {
    fn lang(&self) -> Lang {
        self.lang
    }
}

/// A whole number as templates hand it over: by value or by reference.
pub trait Amount {
    fn amount(&self) -> u64;
}

impl Amount for u64 {
    fn amount(&self) -> u64 {
        *self
    }
}

impl Amount for u32 {
    fn amount(&self) -> u64 {
        u64::from(*self)
    }
}

impl Amount for usize {
    fn amount(&self) -> u64 {
        *self as u64
    }
}

impl<T: Amount> Amount for &T {
    fn amount(&self) -> u64 {
        (**self).amount()
    }
}

pub fn render(page: &impl Template) -> Result<Html<String>, PageError> {
    page.render()
        .map(Html)
        .map_err(|e| PageError(ApiError::internal(&e)))
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub status: u16,
    pub message: String,
}

/// Recordings the home page shows below the live rooms.
const HOME_RECORDS: usize = 8;

/// What the home page shows under the header: the live rooms and the newest recordings, the same
/// for every reader of one language. Its layout only lends the language's words.
#[derive(Template)]
#[template(path = "home_content.html")]
struct HomeContent<'a> {
    layout: Layout,
    rooms: &'a [RoomSummary],
    /// The newest recordings, in `records_grid_partial.html` (with a pager that links nowhere).
    records: Vec<RecordCard>,
    pager: Pager,
    empty_message: &'static str,
}

/// The home page around its content: rendered with [`CONTENT_MARK`] for the content, and cut
/// there into the reader's own head and the tail every reader of the language shares.
#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    layout: Layout,
    /// [`CONTENT_MARK`], inserted as it is (`|safe`). What replaces it, [`HomeContent`] as
    /// rendered, was escaped by askama then, so it goes in unescaped too.
    content: &'static str,
}

/// Where the content goes in a rendered [`HomePage`]: a character no template holds and the
/// footer cannot carry (no reader's value is in it); searched from the end, so a header holding
/// one cannot move the cut.
const CONTENT_MARK: &str = "\0";

impl HomePage {
    /// The page for `layout`'s reader, up to where the content goes, and the rest.
    fn cut(layout: Layout) -> Result<(String, String), PageError> {
        let Html(page) = render(&HomePage {
            layout,
            content: CONTENT_MARK,
        })?;
        let (head, foot) = page
            .rsplit_once(CONTENT_MARK)
            .expect("home.html puts the content mark between the header and the footer");
        Ok((head.to_owned(), foot.to_owned()))
    }
}

/// The home page's cache, per language: the content built at the last change of what it shows,
/// and the whole page for visitors without a session (the crowd), plain and gzipped. One slot
/// per language of [`Lang::ALL`], however many `Accept-Language` values or cookies clients
/// invent, so it holds at most that many pages.
#[derive(Default)]
pub struct HomePages {
    slots: [HomeSlot; Lang::ALL.len()],
}

#[derive(Default)]
struct HomeSlot {
    /// A std lock: held only to clone or replace the `Arc`, never across an `.await`.
    built: RwLock<Option<Arc<Home>>>,
    /// Held by the one request that builds this language's page after a change; the others
    /// wait for its page rather than each building their own.
    building: tokio::sync::Mutex<()>,
}

impl HomeSlot {
    /// The page built, if it shows what is current.
    fn showing(&self, now: &Shown) -> Option<Arc<Home>> {
        let built = self.built.read().unwrap_or_else(PoisonError::into_inner);
        built.as_ref().filter(|home| home.shown.is(now)).cloned()
    }
}

/// What a home page shows: one state of the live rooms (a listing is replaced, never changed, so
/// the same `Arc` is the same rooms) and one state of the catalogue (its change count).
struct Shown {
    rooms: Arc<LiveListing>,
    records: u64,
}

impl Shown {
    /// Taken before the recordings are read, so a page is never kept as newer than it is.
    fn now(app: &App) -> Shown {
        Shown {
            records: app.records.changes(),
            rooms: app.rooms.live_listing(),
        }
    }

    fn is(&self, other: &Shown) -> bool {
        Arc::ptr_eq(&self.rooms, &other.rooms) && self.records == other.records
    }
}

struct Home {
    shown: Shown,
    /// [`HomeContent`] and the footer: the page after the header, the same for every reader.
    tail: String,
    /// `tail` compressed once, for every reader's gzipped page.
    tail_gzip: GzipTail,
    /// The page without a session: no per-request value is in it (no CSRF token, no nonce).
    anonymous: Bytes,
    anonymous_gzip: Bytes,
}

impl Home {
    async fn build(app: &App, lang: Lang, shown: Shown) -> Result<Home, PageError> {
        let Html(content) = render(&HomeContent {
            layout: Layout::new(lang, ""),
            rooms: &shown.rooms.rooms,
            records: latest(app, HOME_RECORDS).await?,
            pager: Pager::none(),
            empty_message: lang.t("home.no_records"),
        })?;
        let (head, foot) = HomePage::cut(Home::layout(lang, None))?;
        let tail = content + &foot;
        // Built once per change and sent many times: worth the better ratio.
        let tail_gzip = GzipTail::new(tail.as_bytes(), Compression::default());
        app.metrics.home_page_built(lang.tag());
        Ok(Home {
            anonymous_gzip: tail_gzip
                .behind(head.as_bytes(), Compression::default())
                .into(),
            anonymous: (head + &tail).into(),
            tail,
            tail_gzip,
            shown,
        })
    }

    fn layout(lang: Lang, who: Option<&SignedIn>) -> Layout {
        Layout::for_user(lang, lang.t("home.title"), who)
    }

    /// The page of a signed-in reader: their header, then the kept tail.
    fn signed(&self, lang: Lang, who: &SignedIn, gzipped: bool) -> Result<Bytes, PageError> {
        let (head, _) = HomePage::cut(Home::layout(lang, Some(who)))?;
        Ok(if gzipped {
            // Only the header is compressed per request (fast: a few KB).
            self.tail_gzip
                .behind(head.as_bytes(), Compression::fast())
                .into()
        } else {
            (head + &self.tail).into()
        })
    }
}

impl HomePages {
    /// This language's page as it shows what is current, built now if something changed.
    async fn current(&self, app: &App, lang: Lang) -> Result<Arc<Home>, PageError> {
        let slot = &self.slots[Lang::ALL
            .iter()
            .position(|l| *l == lang)
            .expect("Lang::ALL lists every language")];
        if let Some(home) = slot.showing(&Shown::now(app)) {
            return Ok(home);
        }
        let _building = slot.building.lock().await;
        let shown = Shown::now(app);
        if let Some(home) = slot.showing(&shown) {
            return Ok(home);
        }
        let home = Arc::new(Home::build(app, lang, shown).await?);
        *slot.built.write().unwrap_or_else(PoisonError::into_inner) = Some(home.clone());
        Ok(home)
    }
}

/// `/`: the rooms that are live now (`assets/home.js` refreshes them), and the newest
/// recordings, from [`HomePages`]: a visitor without a session gets the cached page as it is; a
/// signed-in reader gets their own header in front of the cached rest. Gzipped for browsers that
/// take it (a page with 500 live rooms drops from ~120 KB to a tenth).
pub async fn home(
    State(app): State<Arc<App>>,
    Extension(pages): Extension<Arc<HomePages>>,
    lang: Lang,
    MaybeSigned(who): MaybeSigned,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let home = pages.current(&app, lang).await?;
    let gzipped = accepts_gzip(&headers);
    let body = match &who {
        None if gzipped => home.anonymous_gzip.clone(),
        None => home.anonymous.clone(),
        Some(who) => home.signed(lang, who, gzipped)?,
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page differs by encoding, by language and by session.
            (header::VARY, "accept-encoding, accept-language, cookie"),
        ],
        body,
    )
        .into_response();
    if gzipped {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
}

/// `/studio`: "My room" in the header. The host console is the owner's own room page, so a
/// user with a room goes there; anyone else learns how to get one.
pub async fn studio(
    lang: Lang,
    csrf: Csrf,
    PageSigned(who): PageSigned,
) -> Result<Response, PageError> {
    if let (UserKind::Registered, Some(room)) = (who.user.kind, who.user.room_id) {
        return Ok(Redirect::to(&format!("/room/{room}")).into_response());
    }
    let notice = NoticePage::new(
        lang,
        "studio.no_room",
        lang.t("studio.no_room_message").to_owned(),
        &csrf,
        None,
    );
    Ok(render(&notice)?.into_response())
}

#[derive(Template)]
#[template(path = "room.html")]
pub struct RoomPage {
    layout: Layout,
    room_id: u64,
    name: String,
    description: String,
    host_nickname: String,
    signed_in: bool,
    /// The viewer's user id (empty without a session), to mark their own danmaku.
    user_id: String,
    is_host: bool,
    /// A registered user: chat, gifts, likes and co-streaming. Guests and visitors without a
    /// session get the invitation to register instead of buttons the server would refuse.
    registered: bool,
    gifts: Vec<GiftView>,
}

/// A gift as a page shows it: the catalogue's entry with its name in the reader's language.
struct GiftView {
    id: String,
    name: String,
    icon: String,
    value: u64,
}

impl GiftView {
    fn of(gift: &GiftConfig, lang: Lang) -> Self {
        GiftView {
            id: gift.id.clone(),
            name: gift.name_in(lang.tag()).to_owned(),
            icon: gift.icon.clone(),
            value: gift.value,
        }
    }
}

/// `/room/{room_id}`: the live room — video, danmaku, gifts, and the host's console.
pub async fn room(
    State(app): State<Arc<App>>,
    lang: Lang,
    MaybeSigned(who): MaybeSigned,
    ApiPath(room_id): ApiPath<u64>,
) -> Result<Html<String>, PageError> {
    let not_found = || {
        PageError(ApiError::new(
            StatusCode::NOT_FOUND,
            "room_not_found",
            "There is no such room.",
        ))
    };
    let id = RoomId(room_id);
    let found = app
        .store
        .run(move |s| {
            let Some(room) = s.room(id)? else {
                return Ok(None);
            };
            Ok(s.user(room.owner)?.map(|owner| (room, owner)))
        })
        .await
        .map_err(ApiError::from)?;
    let (room, owner) = found.ok_or_else(not_found)?;
    let user = who.as_ref().map(|w| &w.user);
    render(&RoomPage {
        layout: Layout::for_user(lang, room.name.clone(), who.as_ref()),
        room_id,
        description: room.description,
        host_nickname: owner.nickname,
        signed_in: who.is_some(),
        user_id: user.map(|u| u.id.0.to_string()).unwrap_or_default(),
        is_host: user.is_some_and(|u| u.id == room.owner),
        registered: user.is_some_and(|u| u.kind == UserKind::Registered),
        gifts: app
            .config
            .gifts
            .iter()
            .map(|g| GiftView::of(g, lang))
            .collect(),
        name: room.name,
    })
}
