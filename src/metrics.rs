//! Metrics: operational counters and latency histograms, rendered as Prometheus text at `/metrics`.
//!
//! Owns: the in-memory series. Calls: nothing. Anyone may record into it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds, in seconds, of the request latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 11] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default, Clone)]
struct Histogram {
    /// Counts per bucket of `LATENCY_BUCKETS` (not cumulative; made cumulative when rendered).
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&le| seconds <= le) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_seconds += seconds;
    }
}

/// The series are keyed by labels from small fixed sets only (a standard method or `OTHER`, a
/// route pattern, a status code), so no client can make them grow.
#[derive(Default, Clone)]
struct HttpSeries {
    /// (method, route, status) → requests.
    requests: BTreeMap<(&'static str, String, u16), u64>,
    /// (method, route) → latency.
    latency: BTreeMap<(&'static str, String), Histogram>,
}

/// The methods of RFC 9110 (and PATCH) get their own label; any other token a client invents is
/// counted as `OTHER`, or 8 KB random methods would each open a new series.
pub fn method_label(method: &str) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    STANDARD
        .into_iter()
        .find(|standard| *standard == method)
        .unwrap_or("OTHER")
}

/// A counter per label value, the values being a fixed set of static strings (so the series stay
/// bounded whatever clients do).
#[derive(Default)]
struct LabelledCounter {
    /// A std mutex: held only for an increment or a copy, never while rendering.
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl LabelledCounter {
    fn add(&self, label: &'static str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(label).or_default() += 1;
    }

    /// Appends the counter family `name`, one series per label value under `label`.
    fn render(&self, out: &mut String, name: &str, help: &str, label: &str) {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (value, count) in &counts {
            let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {count}", escape(value));
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    /// A std mutex, which every request takes once when it ends: held only for a map update or
    /// a copy of the maps, never across an `.await` and never while rendering.
    http: Mutex<HttpSeries>,
    ws_connections: AtomicI64,
    ws_received: AtomicU64,
    /// Publish decisions of the rtmp backend, by outcome ("accepted" or the refusal's reason).
    publishes: LabelledCounter,
    /// Open TCP connections to the HTTP server, WebSockets included.
    connections: AtomicI64,
    /// Connections the server ended or refused to protect itself, by reason.
    dropped: LabelledCounter,
    /// Home pages built for the page cache, by language: one per change of what it shows, not
    /// one per request.
    home_builds: LabelledCounter,
}

/// Gauges owned by other parts, read when `/metrics` is rendered.
pub struct Gauges {
    pub rooms_open: usize,
    pub rooms_live: usize,
    /// Live sessions whose end (stop, then recording) is still being done in the background.
    pub sessions_finishing: usize,
    /// Recordings' open views, heartbeats received, statistics batches written.
    pub watch: (usize, u64, u64),
}

impl Metrics {
    /// Records one finished HTTP request. `route` is the matched route pattern (not the raw
    /// path), so the number of series stays bounded whatever paths clients send.
    pub fn record_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = method_label(method);
        let mut http = self.http.lock().unwrap_or_else(|p| p.into_inner());
        *http
            .requests
            .entry((method, route.to_owned(), status))
            .or_default() += 1;
        http.latency
            .entry((method, route.to_owned()))
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    pub fn ws_opened(&self) {
        self.ws_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ws_closed(&self) {
        self.ws_connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn ws_received(&self) {
        self.ws_received.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one publish decision: "accepted" or why it was refused.
    pub fn publish_decided(&self, outcome: &'static str) {
        self.publishes.add(outcome);
    }

    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts one connection ended or refused by a limit: `reason` names the limit.
    pub fn connection_dropped(&self, reason: &'static str) {
        self.dropped.add(reason);
    }

    /// Counts one build of the home page's cache for the language `lang` (its tag).
    pub fn home_page_built(&self, lang: &'static str) {
        self.home_builds.add(lang);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, gauges: &Gauges) -> String {
        // A copy, so requests finishing meanwhile are not kept waiting on the formatting.
        let http = self.http.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = String::new();
        let simple = [
            (
                "roommanager_rooms_open",
                "gauge",
                "Rooms with a running room task.",
                gauges.rooms_open as i64,
            ),
            (
                "roommanager_rooms_live",
                "gauge",
                "Rooms that are live now.",
                gauges.rooms_live as i64,
            ),
            (
                "roommanager_sessions_finishing",
                "gauge",
                "Ended live sessions whose stop or recording is still being done.",
                gauges.sessions_finishing as i64,
            ),
            (
                "roommanager_record_views_open",
                "gauge",
                "Views of recordings open now (players sending heartbeats).",
                gauges.watch.0 as i64,
            ),
            (
                "roommanager_record_heartbeats_total",
                "counter",
                "Heartbeats received from recording players.",
                gauges.watch.1 as i64,
            ),
            (
                "roommanager_record_watch_writes_total",
                "counter",
                "Write transactions of buffered watch statistics.",
                gauges.watch.2 as i64,
            ),
            (
                "roommanager_http_connections",
                "gauge",
                "Open TCP connections to the HTTP server, WebSockets included.",
                self.connections.load(Ordering::Relaxed),
            ),
            (
                "roommanager_ws_connections",
                "gauge",
                "Open WebSocket connections.",
                self.ws_connections.load(Ordering::Relaxed),
            ),
            (
                "roommanager_ws_messages_received_total",
                "counter",
                "WebSocket messages received from clients.",
                self.ws_received.load(Ordering::Relaxed) as i64,
            ),
        ];
        for (name, kind, help, value) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        self.publishes.render(
            &mut out,
            "roommanager_rtmp_publishes_total",
            "RTMP publishes decided, by outcome.",
            "outcome",
        );
        self.dropped.render(
            &mut out,
            "roommanager_connections_dropped_total",
            "Connections closed or refused by a limit, by reason.",
            "reason",
        );
        self.home_builds.render(
            &mut out,
            "roommanager_home_page_builds_total",
            "Home pages built for the page cache (once per change of what they show), by language.",
            "lang",
        );
        out.push_str("# HELP roommanager_http_requests_total HTTP requests answered.\n");
        out.push_str("# TYPE roommanager_http_requests_total counter\n");
        for ((method, route, status), count) in &http.requests {
            let _ = writeln!(
                out,
                "roommanager_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {count}",
                escape(method),
                escape(route),
            );
        }
        out.push_str(
            "# HELP roommanager_http_request_duration_seconds Time to answer an HTTP request.\n",
        );
        out.push_str("# TYPE roommanager_http_request_duration_seconds histogram\n");
        for ((method, route), h) in &http.latency {
            let labels = format!("method=\"{}\",route=\"{}\"", escape(method), escape(route));
            let mut cumulative = 0;
            for (le, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "roommanager_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "roommanager_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "roommanager_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum_seconds
            );
            let _ = writeln!(
                out,
                "roommanager_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_counts_add_up() {
        let m = Metrics::default();
        m.record_http("GET", "/healthz", 200, Duration::from_millis(2));
        m.record_http("GET", "/healthz", 200, Duration::from_millis(300));
        m.record_http("GET", "/healthz", 503, Duration::from_secs(20));
        let text = m.render(&Gauges {
            rooms_open: 2,
            rooms_live: 1,
            sessions_finishing: 0,
            watch: (0, 0, 0),
        });
        assert!(text.contains("roommanager_rooms_live 1"), "{text}");
        assert!(text.contains(
            "roommanager_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2"
        ));
        assert!(text.contains("le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("le=\"0.5\"} 2"), "{text}");
        assert!(text.contains("le=\"10\"} 2"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 3"), "{text}");
    }

    #[test]
    fn invented_methods_share_one_series() {
        let m = Metrics::default();
        m.record_http("PATCH", "/api/v1/me", 200, Duration::from_millis(1));
        for i in 0..100 {
            let method = format!("X{i:0>8000}");
            m.record_http(&method, "unmatched", 405, Duration::from_millis(1));
        }
        m.record_http("get", "unmatched", 405, Duration::from_millis(1));
        let text = m.render(&Gauges {
            rooms_open: 0,
            rooms_live: 0,
            sessions_finishing: 0,
            watch: (0, 0, 0),
        });
        assert!(
            text.contains("method=\"OTHER\",route=\"unmatched\",status=\"405\"} 101"),
            "{text}"
        );
        assert!(text.contains("method=\"PATCH\""), "{text}");
        assert!(text.len() < 8 * 1024, "{} bytes", text.len());
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
