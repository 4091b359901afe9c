//! `fanout --sweep`: how the cost of a delivery, a connection's memory and the latency grow with
//! the room. Each case (one room of N viewers for each N, then many small rooms) starts each
//! server afresh, connects its viewers (the memory reading) and runs one step, at the same rate
//! per viewer, so the offered load is that rate × N; the two servers take turns going first, as
//! in `--compare`. The end prints a Markdown table of every case and, with
//! `--charts`, draws µs/delivery, KiB/connection and p99 against N as SVG files.

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::{ms, opt, prepare, print_step_header, svg, Args, Shape, Step};

const RM_COLOR: &str = "#1f77b4";
const PEER_COLOR: &str = "#ff7f0e";

/// `--many-rooms ROOMSxVIEWERS`.
pub fn parse_rooms(text: &str) -> Result<(usize, usize), String> {
    let (rooms, viewers) = text
        .split_once(['x', '×'])
        .ok_or_else(|| format!("{text:?} is not ROOMSxVIEWERS, like 500x20"))?;
    let number = |n: &str| {
        n.trim()
            .parse::<usize>()
            .map_err(|_| format!("{n:?} in {text:?} is not a number"))
    };
    Ok((number(rooms)?, number(viewers)?))
}

/// One server's result in one case.
struct Row {
    shape: Shape,
    server: &'static str,
    kb_per_connection: Option<f64>,
    step: Option<Step>,
    failure: Option<String>,
}

impl Row {
    fn case(&self) -> String {
        if self.shape.rooms == 1 {
            format!("1 room × {}", self.shape.viewers)
        } else {
            format!(
                "{} rooms × {}",
                self.shape.rooms,
                self.shape.viewers / self.shape.rooms
            )
        }
    }
}

pub async fn run(args: &Args, run_id: &str, hz: f64) -> Result<(), String> {
    let mut cases: Vec<Shape> = args
        .sweep_viewers
        .iter()
        .map(|&viewers| Shape { viewers, rooms: 1 })
        .collect();
    let (rooms, per_room) = args.many_rooms;
    if rooms > 0 && per_room > 0 {
        cases.push(Shape {
            viewers: rooms * per_room,
            rooms,
        });
    }
    if cases.iter().any(|c| c.viewers == 0) {
        return Err("every case needs at least one viewer".into());
    }
    let mut rows = Vec::new();
    for (index, &shape) in cases.iter().enumerate() {
        println!(
            "\n## {} viewers in {} room(s), {} deliveries/s each",
            shape.viewers, shape.rooms, args.per_viewer_rate
        );
        // One server at a time (15,000 viewers of each at once would pass the client's
        // open-file limit), the first one alternating from case to case; each case starts both
        // afresh, with a data dir and a log of its own.
        let case_id = format!("{run_id}-{index}");
        let mut order = [None, Some("spawn")];
        if index % 2 == 1 {
            order.reverse();
        }
        let offered = args.per_viewer_rate * shape.viewers as f64;
        for peer in order {
            let server = if peer.is_some() {
                "Node ws"
            } else {
                "RoomManager"
            };
            let mut bench = match prepare(args, peer, &case_id, shape).await {
                Ok(bench) => bench,
                Err(e) => {
                    println!("# {server}: {e}");
                    rows.push(Row {
                        shape,
                        server,
                        kb_per_connection: None,
                        step: None,
                        failure: Some(e),
                    });
                    continue;
                }
            };
            print_step_header();
            let step = bench.step(args, index, offered, hz).await;
            bench.stop();
            rows.push(Row {
                shape,
                server,
                kb_per_connection: bench.kb_per_connection,
                failure: step.is_none().then(|| "the step failed".to_owned()),
                step,
            });
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    rows.sort_by_key(|r| (r.shape.rooms, r.shape.viewers, r.server));
    print_table(args, &rows);
    if let Some(dir) = &args.charts {
        write_charts(dir, &rows)?;
        println!("# charts written to {}", dir.display());
    }
    Ok(())
}

fn print_table(args: &Args, rows: &[Row]) {
    println!(
        "\n# sweep at {} deliveries/s per viewer, {} s windows; load {}",
        args.per_viewer_rate,
        args.secs,
        super::probe::loadavg()
    );
    println!(
        "\n| case | server | offered deliveries/s | deliveries/s | server µs/delivery \
         | server KiB/conn | p50 ms | p99 ms | valid |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---|");
    for row in rows {
        let offered = row.shape.viewers as f64 * args.per_viewer_rate;
        match &row.step {
            Some(step) => println!(
                "| {} | {} | {offered:.0} | {:.0} | {} | {} | {} | {} | {} |",
                row.case(),
                row.server,
                step.deliveries_per_sec,
                opt(step.server_us_per_delivery, 2),
                opt(row.kb_per_connection, 1),
                ms(step.p50_ms),
                ms(step.p99_ms),
                if step.valid { "yes" } else { "no" }
            ),
            None => println!(
                "| {} | {} | {offered:.0} | | | {} | | | no ({}) |",
                row.case(),
                row.server,
                opt(row.kb_per_connection, 1),
                row.failure.as_deref().unwrap_or("failed")
            ),
        }
    }
}

/// One chart per figure: a line per server over the one-room cases, the many-rooms case as a
/// single larger dot per server at its total viewers.
fn write_charts(dir: &Path, rows: &[Row]) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    type Figure = fn(&Row) -> Option<f64>;
    // The p99 spans milliseconds to the seconds of an overloaded server: a logarithmic axis.
    let figures: [(&str, &str, &str, bool, Figure); 3] = [
        (
            "fanout-us-per-delivery.svg",
            "Server CPU per delivery",
            "server CPU µs per delivery",
            false,
            |r| r.step.as_ref().and_then(|s| s.server_us_per_delivery),
        ),
        (
            "fanout-kib-per-connection.svg",
            "Server memory per idle viewer",
            "server KiB per connection",
            false,
            |r| r.kb_per_connection,
        ),
        (
            "fanout-p99.svg",
            "Latency, 99th percentile",
            "p99 latency (ms, log scale)",
            true,
            |r| r.step.as_ref().and_then(|s| s.p99_ms),
        ),
    ];
    let many = rows
        .iter()
        .find(|r| r.shape.rooms > 1)
        .map(Row::case)
        .unwrap_or_default();
    let names = [
        ("RoomManager", RM_COLOR, format!("RoomManager, {many}")),
        ("Node ws", PEER_COLOR, format!("Node ws, {many}")),
    ];
    for (file, title, y_label, y_log, figure) in figures {
        let points = |server: &str, many_rooms: bool| -> Vec<(f64, f64)> {
            rows.iter()
                .filter(|r| r.server == server && (r.shape.rooms > 1) == many_rooms)
                .filter_map(|r| Some((r.shape.viewers as f64, figure(r)?)))
                .collect()
        };
        let mut series = Vec::new();
        for (server, color, _) in &names {
            series.push(svg::Series {
                name: server,
                color,
                line: true,
                points: points(server, false),
            });
        }
        for (server, color, name) in &names {
            series.push(svg::Series {
                name,
                color,
                line: false,
                points: points(server, true),
            });
        }
        series.retain(|s| !s.points.is_empty());
        let chart = svg::Chart {
            title,
            x_label: "viewers (log scale)",
            y_label,
            y_log,
            series,
        };
        let path = dir.join(file);
        fs::write(&path, svg::render(&chart)).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
