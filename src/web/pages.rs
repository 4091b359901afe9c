//! Server-rendered pages: the base layout every page shares, and the pages themselves.
//!
//! Each page's template struct sits beside its handler and is named after the page. Templates
//! live in `templates/`; askama escapes every value.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::response::Html;

use crate::accounts::SignedIn;
use crate::app::App;
use crate::rooms::protocol::RoomPhase;
use crate::rooms::RoomSummary;

use super::auth::MaybeSigned;
use super::error::{ApiError, PageError};

/// What `base.html` needs from every page.
pub struct Layout {
    pub title: String,
    pub version: &'static str,
    /// The signed-in user's nickname, for the header.
    pub user_name: Option<String>,
}

impl Layout {
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            version: env!("CARGO_PKG_VERSION"),
            user_name: None,
        }
    }

    pub fn for_user(title: impl Into<String>, who: Option<&SignedIn>) -> Self {
        Self {
            user_name: who.map(|w| w.user.nickname.clone()),
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

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage {
    layout: Layout,
    rooms: Vec<RoomSummary>,
}

/// `/`: the rooms that are live now.
pub async fn home(
    State(app): State<Arc<App>>,
    MaybeSigned(who): MaybeSigned,
) -> Result<Html<String>, PageError> {
    render(&HomePage {
        layout: Layout::for_user("Live now", who.as_ref()),
        rooms: app.rooms.live_rooms(),
    })
}
