//! Statistics for the admin: logins, live sessions and recordings per day over a date range, as
//! reports (JSON), tables (CSV and the pages' tables) and charts (`svg.rs`).
//!
//! Owns: the date range's rules (dates, order, longest range), the reports' shapes, CSV. Calls:
//! store (its roll-ups, `store/stats.rs`). Every figure is computed from stored events; days are
//! UTC.

pub mod peaks;
pub mod svg;

use serde::Serialize;

use crate::calendar::{day_label, parse_date};
use crate::store::{
    AuditFilter, LiveDay, LoginFigures, RecordDay, RecordFigures, Store, StoreError, TopRecord,
};

const DAY: u64 = 86_400;
/// A range longer than this is refused: three years of days, a few thousand roll-up rows.
pub const MAX_RANGE_DAYS: u64 = 3 * 366;
/// The range when the request names none: the last 30 days, today included.
pub const DEFAULT_RANGE_DAYS: u64 = 30;
/// How many recordings each top list holds.
pub const TOP_RECORDS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("`{field}` must be a date as YYYY-MM-DD; {value:?} is not")]
    InvalidDate { field: &'static str, value: String },
    #[error("`from` ({from}) is after `to` ({to})")]
    Reversed { from: String, to: String },
    #[error("the range holds {days} days; at most {max} are allowed")]
    RangeTooLong { days: u64, max: u64 },
    #[error("there are no statistics called {0:?}; try logins, lives or records")]
    NoSuchSection(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An inclusive range of unix days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub first: u64,
    pub last: u64,
}

impl DayRange {
    /// The range a request asks for: `from` and `to` as dates, either absent (`to` is then today,
    /// `from` the 30 days up to `to`); `from` ≤ `to`, at most [`MAX_RANGE_DAYS`] long.
    pub fn parse(from: Option<&str>, to: Option<&str>, now: u64) -> Result<DayRange, StatsError> {
        let (first, last) = dates(from, to)?;
        let last = last.unwrap_or(now / DAY);
        let first = first.unwrap_or_else(|| last.saturating_sub(DEFAULT_RANGE_DAYS - 1));
        let range = DayRange { first, last };
        if first > last {
            return Err(StatsError::Reversed {
                from: day_label(first),
                to: day_label(last),
            });
        }
        if range.days() > MAX_RANGE_DAYS {
            return Err(StatsError::RangeTooLong {
                days: range.days(),
                max: MAX_RANGE_DAYS,
            });
        }
        Ok(range)
    }

    pub fn days(&self) -> u64 {
        self.last - self.first + 1
    }

    pub fn from_label(&self) -> String {
        day_label(self.first)
    }

    pub fn to_label(&self) -> String {
        day_label(self.last)
    }
}

/// The audit log's filter from a request's `admin`, `action`, `from` and `to` (dates, both
/// optional, inclusive).
pub fn audit_filter(
    admin: Option<&str>,
    action: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<AuditFilter, StatsError> {
    let (first, last) = dates(from, to)?;
    if let (Some(first), Some(last)) = (first, last) {
        if first > last {
            return Err(StatsError::Reversed {
                from: day_label(first),
                to: day_label(last),
            });
        }
    }
    let given = |v: Option<&str>| {
        v.map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Ok(AuditFilter {
        admin: given(admin),
        action: given(action),
        from: first.map(|d| d * DAY),
        until: last.map(|d| (d + 1) * DAY),
    })
}

/// `from` and `to` as days; an empty value counts as absent (an empty date field of a form).
fn dates(from: Option<&str>, to: Option<&str>) -> Result<(Option<u64>, Option<u64>), StatsError> {
    let day = |field: &'static str, value: Option<&str>| match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(text) => parse_date(text).map(Some).ok_or(StatsError::InvalidDate {
            field,
            value: text.to_owned(),
        }),
    };
    Ok((day("from", from)?, day("to", to)?))
}

/// The statistics there are, one report each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Logins,
    Lives,
    Records,
}

impl Section {
    pub fn parse(name: &str) -> Result<Section, StatsError> {
        match name {
            "logins" => Ok(Section::Logins),
            "lives" => Ok(Section::Lives),
            "records" => Ok(Section::Records),
            other => Err(StatsError::NoSuchSection(other.to_owned())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Section::Logins => "logins",
            Section::Lives => "lives",
            Section::Records => "records",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LoginDayView {
    pub date: String,
    pub logins: u64,
    pub unique_users: u64,
    pub guests: u64,
    pub registrations: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HourView {
    pub hour: u8,
    pub logins: u64,
    pub guests: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LiveDayView {
    pub date: String,
    pub sessions: u64,
    pub live_secs: u64,
    pub hours_live: f64,
    pub peak_viewers: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordDayView {
    pub date: String,
    pub views: u64,
    pub watch_secs: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopRecordView {
    pub record_id: u64,
    pub title: String,
    pub host: String,
    pub views: u64,
    pub watch_secs: u64,
}

/// One report: what the JSON carries (with the range as dates).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Report {
    Logins {
        from: String,
        to: String,
        days: Vec<LoginDayView>,
        hours: Vec<HourView>,
    },
    Lives {
        from: String,
        to: String,
        days: Vec<LiveDayView>,
    },
    Records {
        from: String,
        to: String,
        days: Vec<RecordDayView>,
        top_by_views: Vec<TopRecordView>,
        top_by_watch_time: Vec<TopRecordView>,
    },
}

/// Computes a report from the store (blocking work on the store's pool).
pub async fn report(
    store: &Store,
    section: Section,
    range: DayRange,
    now: u64,
) -> Result<Report, StatsError> {
    let DayRange { first, last } = range;
    let (from, to) = (range.from_label(), range.to_label());
    Ok(match section {
        Section::Logins => {
            let figures = store.run(move |s| s.login_figures(first, last)).await?;
            login_report(from, to, figures)
        }
        Section::Lives => {
            let days = store.run(move |s| s.live_days(first, last, now)).await?;
            Report::Lives {
                from,
                to,
                days: days.iter().map(live_day).collect(),
            }
        }
        Section::Records => {
            let figures = store
                .run(move |s| s.record_figures(first, last, TOP_RECORDS))
                .await?;
            record_report(from, to, figures)
        }
    })
}

fn login_report(from: String, to: String, figures: LoginFigures) -> Report {
    let days = figures
        .days
        .iter()
        .map(|d| LoginDayView {
            date: day_label(d.day),
            logins: d.logins,
            unique_users: d.unique_users,
            guests: d.guests,
            registrations: d.registrations,
        })
        .collect();
    let hours = (0u8..)
        .zip(figures.hours)
        .map(|(hour, h)| HourView {
            hour,
            logins: h.logins,
            guests: h.guests,
        })
        .collect();
    Report::Logins {
        from,
        to,
        days,
        hours,
    }
}

fn live_day(d: &LiveDay) -> LiveDayView {
    LiveDayView {
        date: day_label(d.day),
        sessions: d.sessions,
        live_secs: d.live_secs,
        hours_live: (d.live_secs as f64 / 36.0).round() / 100.0,
        peak_viewers: d.peak_viewers,
    }
}

fn record_report(from: String, to: String, figures: RecordFigures) -> Report {
    let day = |d: &RecordDay| RecordDayView {
        date: day_label(d.day),
        views: d.views,
        watch_secs: d.watched_ms / 1000,
    };
    let top = |list: Vec<TopRecord>| {
        list.into_iter()
            .map(|t| TopRecordView {
                record_id: t.record.id.0,
                title: t.record.title,
                host: t.host,
                views: t.views,
                watch_secs: t.watched_ms / 1000,
            })
            .collect()
    };
    Report::Records {
        from,
        to,
        days: figures.days.iter().map(day).collect(),
        top_by_views: top(figures.by_views),
        top_by_watch_time: top(figures.by_watch_time),
    }
}

/// A table of a report: its rows as text, for CSV and for the pages.
#[derive(Debug, Clone)]
pub struct Table {
    /// As `?table=` names it.
    pub name: &'static str,
    pub caption: &'static str,
    pub header: &'static [&'static str],
    pub rows: Vec<Vec<String>>,
}

impl Report {
    /// Every table of the report; the first is the one `?format=csv` gives without `table`.
    pub fn tables(&self) -> Vec<Table> {
        match self {
            Report::Logins { days, hours, .. } => vec![
                Table {
                    name: "days",
                    caption: "Logins per day",
                    header: &["date", "logins", "unique_users", "guests", "registrations"],
                    rows: days
                        .iter()
                        .map(|d| {
                            let figures = [d.logins, d.unique_users, d.guests, d.registrations];
                            row(&d.date, &figures)
                        })
                        .collect(),
                },
                Table {
                    name: "hours",
                    caption: "Logins per hour of the day (UTC)",
                    header: &["hour", "logins", "guests"],
                    rows: hours
                        .iter()
                        .map(|h| row(&format!("{:02}", h.hour), &[h.logins, h.guests]))
                        .collect(),
                },
            ],
            Report::Lives { days, .. } => vec![Table {
                name: "days",
                caption: "Live sessions per day",
                header: &[
                    "date",
                    "sessions",
                    "live_secs",
                    "hours_live",
                    "peak_viewers",
                ],
                rows: days
                    .iter()
                    .map(|d| {
                        let mut cells = row(&d.date, &[d.sessions, d.live_secs]);
                        cells.push(format!("{:.2}", d.hours_live));
                        cells.push(d.peak_viewers.to_string());
                        cells
                    })
                    .collect(),
            }],
            Report::Records {
                days,
                top_by_views,
                top_by_watch_time,
                ..
            } => vec![
                Table {
                    name: "days",
                    caption: "Recordings watched per day",
                    header: &["date", "views", "watch_secs"],
                    rows: days
                        .iter()
                        .map(|d| row(&d.date, &[d.views, d.watch_secs]))
                        .collect(),
                },
                top_table("top_views", "Top recordings by views", top_by_views),
                top_table(
                    "top_watch_time",
                    "Top recordings by watch time",
                    top_by_watch_time,
                ),
            ],
        }
    }

    /// The table called `name` (the first without one).
    pub fn table(&self, name: Option<&str>) -> Result<Table, StatsError> {
        let mut tables = self.tables();
        let Some(name) = name else {
            return Ok(tables.swap_remove(0));
        };
        let names: Vec<&str> = tables.iter().map(|t| t.name).collect();
        let wanted = names.iter().position(|n| *n == name).ok_or_else(|| {
            StatsError::InvalidQuery(format!(
                "`table` is one of {}; {name:?} is not",
                names.join(", ")
            ))
        })?;
        Ok(tables.swap_remove(wanted))
    }
}

fn row(first: &str, figures: &[u64]) -> Vec<String> {
    std::iter::once(first.to_owned())
        .chain(figures.iter().map(u64::to_string))
        .collect()
}

fn top_table(name: &'static str, caption: &'static str, list: &[TopRecordView]) -> Table {
    Table {
        name,
        caption,
        header: &["record_id", "title", "host", "views", "watch_secs"],
        rows: list
            .iter()
            .map(|t| {
                vec![
                    t.record_id.to_string(),
                    t.title.clone(),
                    t.host.clone(),
                    t.views.to_string(),
                    t.watch_secs.to_string(),
                ]
            })
            .collect(),
    }
}

/// `header` and `rows` as CSV (RFC 4180: CRLF line ends, a field with a comma, quote or line
/// break in quotes, quotes doubled). A field a spreadsheet would run as a formula (starting with
/// `=`, `+`, `-`, `@`) gets a leading `'`, so a recording's title cannot become one.
pub fn csv(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let fields: Vec<String> = cells.map(csv_field).collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

impl Table {
    pub fn csv(&self) -> String {
        csv(self.header, &self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_back_as_their_days() {
        for day in [0, 59, 365, 11_016, 19_782, 20_787, 47_540] {
            assert_eq!(parse_date(&day_label(day)), Some(day), "{day}");
        }
        for bad in [
            "2026-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-1-01",
            "20240101",
            "1969-12-31",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let rows = vec![vec![
            "a, \"b\"".to_owned(),
            "=1+1".to_owned(),
            "x".to_owned(),
        ]];
        assert_eq!(
            csv(&["t", "u", "v"], &rows),
            "t,u,v\r\n\"a, \"\"b\"\"\",'=1+1,x\r\n"
        );
    }
}
