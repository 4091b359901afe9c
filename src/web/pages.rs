//! Server-rendered pages: the base layout every page shares, and the pages themselves.
//!
//! Each page's template struct sits beside its handler and is named after the page. Templates
//! live in `templates/`; askama escapes every value.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::accounts::SignedIn;
use crate::app::App;
use crate::config::GiftConfig;
use crate::model::{RoomId, UserKind};
use crate::rooms::protocol::RoomPhase;
use crate::rooms::RoomSummary;

use super::auth::{MaybeSigned, PageSigned};
use super::error::{ApiError, PageError};
use super::path::ApiPath;
use super::record_pages::{latest, Pager, RecordCard};

/// What `base.html` needs from every page.
pub struct Layout {
    pub title: String,
    pub version: &'static str,
    /// The signed-in user's nickname, for the header.
    pub user_name: Option<String>,
    /// A registered user is signed in: the header links to their room (`/studio`).
    pub registered: bool,
}

impl Layout {
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            version: env!("CARGO_PKG_VERSION"),
            user_name: None,
            registered: false,
        }
    }

    pub fn for_user(title: impl Into<String>, who: Option<&SignedIn>) -> Self {
        Self {
            user_name: who.map(|w| w.user.nickname.clone()),
            registered: who.is_some_and(|w| w.user.kind == UserKind::Registered),
            ..Self::new(title)
        }
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
    MaybeSigned(who): MaybeSigned,
) -> Result<Html<String>, PageError> {
    render(&HomePage {
        layout: Layout::for_user("Live now", who.as_ref()),
        rooms: app.rooms.live_rooms(),
        records: latest(&app, HOME_RECORDS).await?,
        pager: Pager::none(),
        empty_message: "No recordings yet.",
    })
}

#[derive(Template)]
#[template(path = "notice.html")]
struct StudioNotice {
    layout: Layout,
    message: &'static str,
    offer_resend: bool,
    csrf: &'static str,
    username: &'static str,
    email: &'static str,
    next_href: &'static str,
    next_label: &'static str,
}

/// `/studio`: "My room" in the header. The host console is the owner's own room page, so a
/// user with a room goes there; anyone else learns how to get one.
pub async fn studio(PageSigned(who): PageSigned) -> Result<Response, PageError> {
    if let (UserKind::Registered, Some(room)) = (who.user.kind, who.user.room_id) {
        return Ok(Redirect::to(&format!("/room/{room}")).into_response());
    }
    let notice = StudioNotice {
        layout: Layout::for_user("No room yet", Some(&who)),
        message: "Going live needs a room of your own: every registered account with a \
                  confirmed email gets one. Register (or log in) with such an account to open \
                  your host console here.",
        offer_resend: false,
        csrf: "",
        username: "",
        email: "",
        next_href: "/register",
        next_label: "Register",
    };
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
    is_host: bool,
    can_chat: bool,
    gifts: Vec<GiftConfig>,
}

/// `/room/{room_id}`: the live room — video, danmaku, gifts, and the host's console.
pub async fn room(
    State(app): State<Arc<App>>,
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
        layout: Layout::for_user(room.name.clone(), who.as_ref()),
        room_id,
        description: room.description,
        host_nickname: owner.nickname,
        signed_in: who.is_some(),
        is_host: user.is_some_and(|u| u.id == room.owner),
        can_chat: user.is_some_and(|u| u.kind == UserKind::Registered),
        gifts: app.config.gifts.clone(),
        name: room.name,
    })
}
