//! The recordings' pages: `/records` (the catalogue: search, sort, pages), `/users/{id}` (a
//! host and their recordings) and `/records/{id}` (the replay page). Server rendered from the
//! same catalogue queries the JSON API uses, so the catalogue works without JavaScript; the
//! replay page's comments, replayed danmaku and watch statistics are `assets/record.js` over the
//! API.
//! Calls: app → records, store lookups; pages (layout), error.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Html;
use serde::Deserialize;

use crate::app::App;
use crate::calendar::day_label;
use crate::files::ImageKind;
use crate::i18n::Lang;
use crate::model::{RecordId, UserId, UserKind};
use crate::records::{parse_order, Paging, RecordsError, DEFAULT_PER_PAGE};
use crate::store::{CataloguePage, Listed, RecordOrder};

use super::auth::MaybeSigned;
use super::error::{ApiError, PageError};
use super::pages::{render, Layout, Speaks as _};
use super::path::ApiPath;

/// One recording in a grid (`records_grid_partial.html`).
pub struct RecordCard {
    pub(super) id: u64,
    pub(super) title: String,
    pub(super) host_nickname: String,
    pub(super) thumbnail_url: Option<String>,
    pub(super) date: String,
    pub(super) duration: String,
    pub(super) views: u64,
}

impl From<Listed> for RecordCard {
    fn from(Listed { record, host }: Listed) -> Self {
        RecordCard {
            id: record.id.0,
            host_nickname: host.map(|h| h.nickname).unwrap_or_default(),
            thumbnail_url: record.thumbnail_url,
            date: date(record.started_at),
            duration: clock(record.duration_secs),
            views: record.views,
            title: record.title,
        }
    }
}

/// The links between the pages of a grid; each keeps the search and the sort.
pub struct Pager {
    pub(super) page: usize,
    pub(super) pages: u64,
    pub(super) prev_href: Option<String>,
    pub(super) next_href: Option<String>,
}

impl Pager {
    /// No links: a grid that shows a few recordings and links to the catalogue instead.
    pub(super) fn none() -> Self {
        Pager {
            page: 1,
            pages: 1,
            prev_href: None,
            next_href: None,
        }
    }

    fn new(path: &str, listing: &Listing, total: u64) -> Self {
        let per_page = listing.paging.per_page as u64;
        let pages = total.div_ceil(per_page).max(1);
        let page = listing.paging.page;
        let href = |page: usize| {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if !listing.query.is_empty() {
                query.append_pair("q", &listing.query);
            }
            if listing.order != RecordOrder::Newest {
                query.append_pair("sort", order_name(listing.order));
            }
            query.append_pair("page", &page.to_string());
            format!("{path}?{}", query.finish())
        };
        Pager {
            page,
            pages,
            prev_href: (page > 1).then(|| href(page - 1)),
            next_href: ((page as u64) < pages).then(|| href(page + 1)),
        }
    }
}

/// The catalogue's orders as the sort selector offers them: the API's name and its label's key.
const ORDERS: [(RecordOrder, &str, &str); 3] = [
    (RecordOrder::Newest, "newest", "records.sort_newest"),
    (
        RecordOrder::MostViewed,
        "most_viewed",
        "records.sort_most_viewed",
    ),
    (RecordOrder::Longest, "longest", "records.sort_longest"),
];

fn order_name(order: RecordOrder) -> &'static str {
    ORDERS
        .iter()
        .find(|(o, ..)| *o == order)
        .map_or("newest", |(_, name, _)| name)
}

/// One choice of the sort selector.
pub struct SortOption {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

/// The query string of a grid page, as a browser sends it (a form sends `q=` when the box is
/// empty, so an empty field counts as absent).
#[derive(Deserialize)]
pub struct GridQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    page: String,
}

/// What a grid page shows: the search (empty: all), the order and the page, read by the same
/// rules as the API's.
struct Listing {
    query: String,
    order: RecordOrder,
    paging: Paging,
}

impl Listing {
    fn parse(raw: GridQuery) -> Result<Listing, PageError> {
        let given = |value: &str| Some(value.to_owned()).filter(|v| !v.is_empty());
        let per_page = DEFAULT_PER_PAGE.to_string();
        let sort = given(&raw.sort);
        let page = given(&raw.page);
        Ok(Listing {
            query: raw.q.trim().to_owned(),
            order: parse_order(sort.as_deref()).map_err(ApiError::from)?,
            paging: Paging::parse(page.as_deref(), Some(&per_page)).map_err(ApiError::from)?,
        })
    }

    /// The cards of this page, and how many recordings there are in all: the catalogue's, one
    /// host's, or a search's.
    async fn find(
        &self,
        app: &App,
        host: Option<UserId>,
    ) -> Result<(Vec<RecordCard>, u64), PageError> {
        let found = if self.query.is_empty() {
            app.records.list(self.order, host, self.paging).await
        } else {
            app.records
                .search(&self.query, self.order, self.paging)
                .await
        };
        let CataloguePage { records, total } = found.map_err(ApiError::from)?;
        Ok((records.into_iter().map(RecordCard::from).collect(), total))
    }
}

/// The `count` newest recordings, as cards.
pub(super) async fn latest(app: &App, count: usize) -> Result<Vec<RecordCard>, PageError> {
    let paging = Paging {
        page: 1,
        per_page: count,
    };
    let CataloguePage { records, .. } = app
        .records
        .list(RecordOrder::Newest, None, paging)
        .await
        .map_err(ApiError::from)?;
    Ok(records.into_iter().map(RecordCard::from).collect())
}

#[derive(Template)]
#[template(path = "records.html")]
struct RecordsPage {
    layout: Layout,
    query: String,
    sorts: Vec<SortOption>,
    total: u64,
    records: Vec<RecordCard>,
    pager: Pager,
    empty_message: &'static str,
}

/// `/records`: the catalogue, searched (`q`), sorted (`sort`) and paged (`page`).
pub async fn records(
    State(app): State<Arc<App>>,
    lang: Lang,
    MaybeSigned(who): MaybeSigned,
    Query(raw): Query<GridQuery>,
) -> Result<Html<String>, PageError> {
    let listing = Listing::parse(raw)?;
    let (records, total) = listing.find(&app, None).await?;
    render(&RecordsPage {
        layout: Layout::for_user(lang, lang.t("records.title"), who.as_ref()),
        sorts: ORDERS
            .into_iter()
            .map(|(order, value, label)| SortOption {
                value,
                label: lang.t(label),
                selected: order == listing.order,
            })
            .collect(),
        total,
        records,
        pager: Pager::new("/records", &listing, total),
        empty_message: lang.t(if !listing.query.is_empty() {
            "records.no_match"
        } else if listing.paging.page > 1 {
            "records.no_more"
        } else {
            "records.none_yet"
        }),
        query: listing.query,
    })
}

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    layout: Layout,
    nickname: String,
    initial: String,
    avatar_url: Option<String>,
    room_id: Option<u64>,
    total: u64,
    records: Vec<RecordCard>,
    pager: Pager,
    empty_message: &'static str,
}

/// `/users/{id}`: a host, their room and their recordings, newest first.
pub async fn user(
    State(app): State<Arc<App>>,
    lang: Lang,
    MaybeSigned(who): MaybeSigned,
    ApiPath(user_id): ApiPath<u64>,
    Query(raw): Query<GridQuery>,
) -> Result<Html<String>, PageError> {
    let mut listing = Listing::parse(raw)?;
    // The host page lists; it does not search.
    listing.query.clear();
    let id = UserId(user_id);
    let host = app
        .store
        .run(move |s| s.user(id))
        .await
        .map_err(ApiError::from)?
        .filter(|u| u.kind == UserKind::Registered)
        .ok_or_else(|| ApiError::from(RecordsError::UserNotFound))?;
    let (records, total) = listing.find(&app, Some(id)).await?;
    render(&UserPage {
        layout: Layout::for_user(lang, host.nickname.clone(), who.as_ref()),
        initial: host
            .nickname
            .chars()
            .next()
            .map(|c| c.to_uppercase().collect())
            .unwrap_or_default(),
        avatar_url: host.avatar.as_deref().map(|a| ImageKind::Avatar.url(a)),
        room_id: host.room_id.map(|r| r.0),
        total,
        records,
        pager: Pager::new(&format!("/users/{user_id}"), &listing, total),
        empty_message: lang.t("user.no_records"),
        nickname: host.nickname,
    })
}

#[derive(Template)]
#[template(path = "record.html")]
struct RecordPage {
    layout: Layout,
    id: u64,
    title: String,
    url: String,
    host_id: u64,
    host_nickname: String,
    date: String,
    duration: String,
    duration_ms: u64,
    views: u64,
    comments_count: u64,
    /// The viewer's user id, empty for a visitor without a session.
    user_id: String,
    is_host: bool,
    /// Why the viewer cannot comment, if they cannot.
    cannot_comment: Option<&'static str>,
}

/// `/records/{id}`: the replay page.
pub async fn record(
    State(app): State<Arc<App>>,
    lang: Lang,
    MaybeSigned(who): MaybeSigned,
    ApiPath(record_id): ApiPath<u64>,
) -> Result<Html<String>, PageError> {
    let detail = app
        .records
        .get(RecordId(record_id))
        .await
        .map_err(ApiError::from)?;
    let Listed { record, host } = detail.listed;
    let user = who.as_ref().map(|w| &w.user);
    let cannot_comment = match user {
        None => Some("record.comment_log_in"),
        Some(u) if u.kind == UserKind::Guest => Some("record.comment_guest"),
        Some(u) if !u.is_verified() => Some("record.comment_verify"),
        Some(_) => None,
    }
    .map(|key| lang.t(key));
    render(&RecordPage {
        layout: Layout::for_user(lang, record.title.clone(), who.as_ref()),
        id: record.id.0,
        url: record.url.clone(),
        host_id: record.host.0,
        host_nickname: host.map(|h| h.nickname).unwrap_or_default(),
        date: date(record.started_at),
        duration: clock(record.duration_secs),
        duration_ms: record.duration_secs * 1000,
        views: record.views,
        comments_count: record.comments_count,
        user_id: user.map(|u| u.id.0.to_string()).unwrap_or_default(),
        is_host: user.is_some_and(|u| u.id == record.host),
        cannot_comment,
        title: record.title,
    })
}

/// A length as h:mm:ss.
fn clock(secs: u64) -> String {
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The UTC calendar date of unix seconds.
fn date(unix: u64) -> String {
    day_label(unix / 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_read_as_hours_minutes_seconds() {
        assert_eq!(clock(0), "0:00:00");
        assert_eq!(clock(59), "0:00:59");
        assert_eq!(clock(3599), "0:59:59");
        assert_eq!(clock(3600 * 27 + 61), "27:01:01");
    }

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(1_795_714_121), "2026-11-26");
        assert_eq!(date(4_107_542_399), "2100-02-28");
    }
}
