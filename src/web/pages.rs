//! Server-rendered pages: the base layout every page shares, and the pages themselves.
//!
//! Each page's template struct sits beside its handler and is named after the page. Templates
//! live in `templates/`; askama escapes every value.

use std::fmt::Display;
use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::accounts::SignedIn;
use crate::app::App;
use crate::config::GiftConfig;
use crate::i18n::Lang;
use crate::model::{RoomId, UserKind};
use crate::rooms::protocol::RoomPhase;
use crate::rooms::RoomSummary;

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

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage {
    layout: Layout,
    rooms: Vec<RoomSummary>,
    /// The newest recordings, in `records_grid_partial.html` (with a pager that links nowhere).
    records: Vec<RecordCard>,
    pager: Pager,
    empty_message: &'static str,
}

/// `/`: the rooms that are live now (`assets/home.js` refreshes them), and the newest
/// recordings.
pub async fn home(
    State(app): State<Arc<App>>,
    lang: Lang,
    MaybeSigned(who): MaybeSigned,
) -> Result<Html<String>, PageError> {
    render(&HomePage {
        layout: Layout::for_user(lang, lang.t("home.title"), who.as_ref()),
        rooms: app.rooms.live_rooms(),
        records: latest(&app, HOME_RECORDS).await?,
        pager: Pager::none(),
        empty_message: lang.t("home.no_records"),
    })
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
