//! The admin's live rooms page (`/admin/rooms`): every room live now with its host, title,
//! audience, start and co-stream, each with a force-close form whose reason its members see.
//!
//! Thin: the same list as the JSON API (`admin_bans.rs`) and the same close (the admin's
//! moderation), rendered in the admin layout. Calls: admin_bans, admin's moderation; auth,
//! csrf, admin layout, error.

use std::sync::Arc;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use crate::admin::moderation::Acting;
use crate::app::App;
use crate::i18n::Lang;
use crate::model::RoomId;

use super::account_pages::{page, see_other, PageForm};
use super::admin_bans::{self, LiveRoom};
use super::admin_pages::AdminLayout;
use super::admin_pages::ReasonForm;
use super::admin_stats::moment;
use super::auth::{AdminPage, ClientIp};
use super::csrf::Csrf;
use super::error::{ApiError, PageError};
use super::pages::Speaks as _;
use super::path::ApiPath;
use super::records::Query;

#[derive(Template)]
#[template(path = "admin/rooms.html")]
struct RoomsPage {
    layout: AdminLayout,
    rooms: Vec<LiveRoom>,
    /// When each room went live, as the page shows it, in `rooms`' order.
    since: Vec<String>,
    closed: bool,
}

/// `GET /admin/rooms`: the rooms live now, most watched first.
pub async fn rooms_page(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    lang: Lang,
    csrf: Csrf,
    RawQuery(raw): RawQuery,
) -> Response {
    let rooms = admin_bans::live_rooms(&app);
    let view = RoomsPage {
        layout: AdminLayout::new(lang, "admin.nav.rooms", &csrf, Some(&admin)),
        since: rooms
            .iter()
            .map(|r| r.since.map(moment).unwrap_or_default())
            .collect(),
        rooms,
        closed: Query::of(raw).get("notice") == Some("closed"),
    };
    page(&app, &csrf, StatusCode::OK, &view)
}

/// `POST /admin/rooms/{id}/close` (a row's form): `303` back to the list.
pub async fn close_submit(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    ClientIp(ip): ClientIp,
    csrf: Csrf,
    ApiPath(id): ApiPath<u64>,
    PageForm(form): PageForm<ReasonForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    let by = Acting { admin: &admin, ip };
    app.moderation
        .close_room(by, RoomId(id), &form.reason)
        .await
        .map_err(ApiError::from)?;
    Ok(see_other("/admin/rooms?notice=closed", None))
}
