//! The recordings' pages: `/records` (the catalogue: search, sort, pages), `/users/{id}` (a
//! host and their recordings) and `/records/{id}` (the replay page). Server rendered from the
//! same catalogue queries the JSON API uses, so the catalogue works without JavaScript; the
//! replay page's comments, replayed danmaku and watch statistics are `assets/record.js` over the
//! API.
//! Calls: app → records, store lookups; pages (layout), error.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use serde::Deserialize;

use crate::app::App;
use crate::files::ImageKind;
use crate::model::{Record, RecordId, User, UserId, UserKind};

use super::auth::MaybeSigned;
use super::error::{ApiError, PageError};
use super::pages::{render, Layout};
use super::path::ApiPath;

/// Cards per catalogue page: the API's default page size.
const PER_PAGE: u64 = 24;

/// One recording in a grid (`records_grid_partial.html`).
pub struct RecordCard {
    id: u64,
    title: String,
    host_nickname: String,
    thumbnail_url: Option<String>,
    date: String,
    duration: String,
    views: u64,
}

impl RecordCard {
    fn new(record: &Record, host: &User) -> Self {
        RecordCard {
            id: record.id.0,
            title: record.title.clone(),
            host_nickname: host.nickname.clone(),
            thumbnail_url: record.thumbnail_url.clone(),
            date: date(record.started_at),
            duration: clock(record.duration_secs),
            views: record.views,
        }
    }
}

/// The links between the pages of a grid; each keeps the search and the sort.
pub struct Pager {
    page: u64,
    pages: u64,
    prev_href: Option<String>,
    next_href: Option<String>,
}

impl Pager {
    fn new(path: &str, listing: &Listing, total: u64) -> Self {
        let pages = total.div_ceil(PER_PAGE).max(1);
        let href = |page: u64| {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if !listing.query.is_empty() {
                query.append_pair("q", &listing.query);
            }
            if listing.sort != Sort::Newest {
                query.append_pair("sort", listing.sort.value());
            }
            query.append_pair("page", &page.to_string());
            format!("{path}?{}", query.finish())
        };
        Pager {
            page: listing.page,
            pages,
            prev_href: (listing.page > 1).then(|| href(listing.page - 1)),
            next_href: (listing.page < pages).then(|| href(listing.page + 1)),
        }
    }
}

/// The catalogue's orders, as the API names them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    Newest,
    MostViewed,
    Longest,
}

impl Sort {
    const ALL: [Sort; 3] = [Sort::Newest, Sort::MostViewed, Sort::Longest];

    fn value(self) -> &'static str {
        match self {
            Sort::Newest => "newest",
            Sort::MostViewed => "most_viewed",
            Sort::Longest => "longest",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Sort::Newest => "Newest",
            Sort::MostViewed => "Most viewed",
            Sort::Longest => "Longest",
        }
    }
}

/// One choice of the sort selector.
pub struct SortOption {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

/// The query string of a grid page, as a browser sends it (every field may be missing or
/// empty: a form sends `q=` when the box is empty).
#[derive(Deserialize)]
pub struct GridQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    page: String,
}

/// What a grid page shows: the search (empty: all), the order and the page (from 1).
struct Listing {
    query: String,
    sort: Sort,
    page: u64,
}

impl Listing {
    fn parse(raw: GridQuery) -> Result<Listing, PageError> {
        let bad = |message: String| {
            PageError(ApiError::new(StatusCode::BAD_REQUEST, "bad_query", message))
        };
        let sort = match raw.sort.as_str() {
            "" => Sort::Newest,
            value => Sort::ALL
                .into_iter()
                .find(|s| s.value() == value)
                .ok_or_else(|| {
                    bad("sort must be one of newest, most_viewed or longest".to_owned())
                })?,
        };
        let page = match raw.page.as_str() {
            "" => 1,
            value => value
                .parse::<u64>()
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| bad("page must be a whole number from 1".to_owned()))?,
        };
        Ok(Listing {
            query: raw.q.trim().to_owned(),
            sort,
            page,
        })
    }
}

fn record_not_found() -> PageError {
    PageError(ApiError::new(
        StatusCode::NOT_FOUND,
        "record_not_found",
        "There is no such recording. It may have been deleted.",
    ))
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
    MaybeSigned(who): MaybeSigned,
    Query(raw): Query<GridQuery>,
) -> Result<Html<String>, PageError> {
    let listing = Listing::parse(raw)?;
    let (records, total) = catalogue(&app, &listing, None).await?;
    render(&RecordsPage {
        layout: Layout::for_user("Recordings", who.as_ref()),
        sorts: Sort::ALL
            .into_iter()
            .map(|s| SortOption {
                value: s.value(),
                label: s.label(),
                selected: s == listing.sort,
            })
            .collect(),
        total,
        records,
        pager: Pager::new("/records", &listing, total),
        empty_message: if !listing.query.is_empty() {
            "No recording matches this search."
        } else if listing.page > 1 {
            "There are no more recordings."
        } else {
            "No recordings yet. Every live session is recorded and appears here when it ends."
        },
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
    MaybeSigned(who): MaybeSigned,
    ApiPath(user_id): ApiPath<u64>,
    Query(raw): Query<GridQuery>,
) -> Result<Html<String>, PageError> {
    let listing = Listing::parse(raw)?;
    let id = UserId(user_id);
    let host = app
        .store
        .run(move |s| s.user(id))
        .await
        .map_err(ApiError::from)?
        .filter(|u| u.kind == UserKind::Registered)
        .ok_or_else(|| {
            PageError(ApiError::new(
                StatusCode::NOT_FOUND,
                "user_not_found",
                "There is no such user.",
            ))
        })?;
    let (records, total) = catalogue(&app, &listing, Some(id)).await?;
    render(&UserPage {
        layout: Layout::for_user(host.nickname.clone(), who.as_ref()),
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
        empty_message: "No recordings yet.",
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
    MaybeSigned(who): MaybeSigned,
    ApiPath(record_id): ApiPath<u64>,
) -> Result<Html<String>, PageError> {
    let (record, host) = one_record(&app, RecordId(record_id))
        .await?
        .ok_or_else(record_not_found)?;
    let user = who.as_ref().map(|w| &w.user);
    let cannot_comment = match user {
        None => Some("Log in to comment. Guests and visitors can watch."),
        Some(u) if u.kind == UserKind::Guest => {
            Some("You are watching as a guest: register to comment.")
        }
        Some(u) if !u.is_verified() => Some("Verify your email address to comment."),
        Some(_) => None,
    };
    render(&RecordPage {
        layout: Layout::for_user(record.title.clone(), who.as_ref()),
        id: record.id.0,
        url: record.url.clone(),
        host_id: host.id.0,
        host_nickname: host.nickname,
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

/// A page of the catalogue (one host's recordings with `host`) as the listing asks, and how
/// many there are in all.
async fn catalogue(
    app: &App,
    listing: &Listing,
    host: Option<UserId>,
) -> Result<(Vec<RecordCard>, u64), PageError> {
    let query = listing.query.to_lowercase();
    let sort = listing.sort;
    let skip = (listing.page - 1) * PER_PAGE;
    let found = app
        .store
        .run(move |s| {
            let mut out = Vec::new();
            for record in s.records()? {
                if host.is_some_and(|h| h != record.host) {
                    continue;
                }
                let Some(owner) = s.user(record.host)? else {
                    continue;
                };
                if !query.is_empty() && !record.title.to_lowercase().contains(&query) {
                    continue;
                }
                out.push((record, owner));
            }
            Ok(out)
        })
        .await
        .map_err(ApiError::from)?;
    let mut found = found;
    match sort {
        Sort::Newest => found.sort_by_key(|r| std::cmp::Reverse(r.0.started_at)),
        Sort::MostViewed => found.sort_by_key(|r| std::cmp::Reverse(r.0.views)),
        Sort::Longest => found.sort_by_key(|r| std::cmp::Reverse(r.0.duration_secs)),
    }
    let total = found.len() as u64;
    let cards = found
        .iter()
        .skip(skip as usize)
        .take(PER_PAGE as usize)
        .map(|(r, u)| RecordCard::new(r, u))
        .collect();
    Ok((cards, total))
}

async fn one_record(app: &App, id: RecordId) -> Result<Option<(Record, User)>, PageError> {
    let found = app
        .store
        .run(move |s| {
            let Some(record) = s.records()?.into_iter().find(|r| r.id == id) else {
                return Ok(None);
            };
            Ok(s.user(record.host)?.map(|host| (record, host)))
        })
        .await
        .map_err(ApiError::from)?;
    Ok(found)
}

/// A length as h:mm:ss.
fn clock(secs: u64) -> String {
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The UTC calendar date of unix seconds, as YYYY-MM-DD (Howard Hinnant's `civil_from_days`).
fn date(unix: u64) -> String {
    let days = (unix / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
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
