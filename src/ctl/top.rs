//! `raftlb ctl top`: every node's traffic, refreshed every second, from
//! the `Traffic` call (counters since each node started; the rates and
//! latency percentiles are over the last interval). `--once` prints one
//! interval and exits, for scripts.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::output::table;
use super::{CALL_TIMEOUT, Client, Outcome};
use crate::proto::v1 as pb;
use crate::traffic::{BackendRates, BackendTraffic, FrontendTraffic, Rates};

/// How often the view refreshes, and the interval `--once` measures.
const INTERVAL: Duration = Duration::from_secs(1);

/// Runs `top` (live until `q` or Ctrl-C, or one interval with `once`).
pub async fn run(client: &mut Client, once: bool, json: bool) -> Result<Outcome, tonic::Status> {
    let mut before = sample(client).await?;
    if once {
        tokio::time::sleep(INTERVAL).await;
        let after = sample(client).await?;
        return Ok(Outcome::Done(render(&before, &after, json)));
    }
    let keys = Keys::open();
    loop {
        let deadline = Instant::now() + INTERVAL;
        while Instant::now() < deadline {
            if keys.as_ref().is_some_and(Keys::quit_pressed) {
                return Ok(Outcome::Done(String::new()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let after = sample(client).await?;
        print!(
            "\x1b[2J\x1b[H{}\r\n\r\nq quits\r\n",
            render(&before, &after, false).replace('\n', "\r\n")
        );
        let _ = std::io::stdout().flush();
        before = after;
    }
}

/// One sample of every node's counters, and when it was taken.
struct Sample {
    at: Instant,
    nodes: Vec<pb::NodeTraffic>,
}

async fn sample(client: &mut Client) -> Result<Sample, tonic::Status> {
    let request = client.request(pb::TrafficRequest {}, CALL_TIMEOUT);
    let reply = client.inner.traffic(request).await?.into_inner();
    Ok(Sample {
        at: Instant::now(),
        nodes: reply.nodes,
    })
}

/// A backend on a node, and its figures over the interval (none when the
/// first sample lacked it).
type BackendRow<'a> = (u64, &'a pb::BackendTraffic, Option<BackendRates>);

/// One frontend's figures over an interval, on one node.
struct FrontendRates {
    node: u64,
    name: String,
    rates: Option<Rates>,
}

fn frontend_rates(before: &Sample, after: &Sample) -> Vec<FrontendRates> {
    let seconds = after.at.duration_since(before.at).as_secs_f64();
    let earlier: BTreeMap<(u64, &str), FrontendTraffic> = before
        .nodes
        .iter()
        .flat_map(|n| {
            n.frontends
                .iter()
                .map(move |f| ((n.id, f.name.as_str()), from_proto(f)))
        })
        .collect();
    after
        .nodes
        .iter()
        .flat_map(|n| n.frontends.iter().map(move |f| (n.id, f)))
        .map(|(node, now)| FrontendRates {
            node,
            name: now.name.clone(),
            // None for a node (or frontend) the first sample lacked: its
            // counters since start-up are no one-second rate.
            rates: earlier
                .get(&(node, now.name.as_str()))
                .map(|before| Rates::between(before, &from_proto(now), seconds, 0)),
        })
        .collect()
}

fn from_proto(f: &pb::FrontendTraffic) -> FrontendTraffic {
    FrontendTraffic {
        name: f.name.clone(),
        requests: f.requests,
        errors: f.errors,
        open: f.open,
        latency_counts: f.latency_counts.clone(),
    }
}

fn backend_from_proto(b: &pb::BackendTraffic) -> BackendTraffic {
    BackendTraffic {
        pool: b.pool.clone(),
        address: b.address.clone(),
        requests: b.requests,
        failures: b.failures,
        errors: b.errors,
        active: b.active,
        latency_counts: b.latency_counts.clone(),
    }
}

fn render(before: &Sample, after: &Sample, json: bool) -> String {
    let seconds = after.at.duration_since(before.at).as_secs_f64().max(0.001);
    let frontends = frontend_rates(before, after);
    let earlier: BTreeMap<(u64, &str, &str), &pb::BackendTraffic> = before
        .nodes
        .iter()
        .flat_map(|n| {
            n.backends
                .iter()
                .map(move |b| ((n.id, b.pool.as_str(), b.address.as_str()), b))
        })
        .collect();
    // Rates: none for a backend the first sample lacked.
    let backends: Vec<BackendRow> = after
        .nodes
        .iter()
        .flat_map(|n| n.backends.iter().map(move |b| (n.id, b)))
        .map(|(node, now)| {
            let then = earlier.get(&(node, now.pool.as_str(), now.address.as_str()));
            let rates = then.map(|t| {
                BackendRates::between(&backend_from_proto(t), &backend_from_proto(now), seconds)
            });
            (node, now, rates)
        })
        .collect();
    let unreached: Vec<u64> = after
        .nodes
        .iter()
        .filter(|n| !n.reached)
        .map(|n| n.id)
        .collect();
    if json {
        let frontends: Vec<_> = frontends
            .iter()
            .map(|f| {
                let r = f.rates.as_ref();
                serde_json::json!({
                    "node": f.node, "frontend": f.name,
                    "requests_per_s": r.map(|r| r.requests_per_s),
                    "errors_per_s": r.map(|r| r.errors_per_s),
                    "p50_ms": r.and_then(|r| r.p50_ms), "p99_ms": r.and_then(|r| r.p99_ms),
                    "open": r.map(|r| r.open),
                })
            })
            .collect();
        let backends: Vec<_> = backends
            .iter()
            .map(|(node, b, rates)| {
                serde_json::json!({
                    "node": node, "pool": b.pool, "backend": b.address,
                    "requests_per_s": rates.as_ref().map(|r| r.requests_per_s),
                    "failures_per_s": rates.as_ref().map(|r| r.failures_per_s),
                    "p50_ms": rates.as_ref().and_then(|r| r.p50_ms),
                    "p99_ms": rates.as_ref().and_then(|r| r.p99_ms),
                    "active": b.active,
                })
            })
            .collect();
        return serde_json::json!({
            "interval_s": seconds, "frontends": frontends, "backends": backends,
            "unreached_nodes": unreached,
        })
        .to_string();
    }
    let frontend_rows = frontends
        .iter()
        .map(|f| {
            vec![
                f.node.to_string(),
                f.name.clone(),
                f.rates
                    .as_ref()
                    .map_or("-".into(), |r| format!("{:.1}", r.requests_per_s)),
                f.rates
                    .as_ref()
                    .map_or("-".into(), |r| format!("{:.1}", r.errors_per_s)),
                latency(f.rates.as_ref().and_then(|r| r.p50_ms)),
                latency(f.rates.as_ref().and_then(|r| r.p99_ms)),
                f.rates.as_ref().map_or("-".into(), |r| r.open.to_string()),
            ]
        })
        .collect();
    let backend_rows = backends
        .iter()
        .map(|(node, b, rates)| {
            vec![
                node.to_string(),
                b.pool.clone(),
                b.address.clone(),
                rates
                    .as_ref()
                    .map_or("-".into(), |r| format!("{:.1}", r.requests_per_s)),
                rates
                    .as_ref()
                    .map_or("-".into(), |r| format!("{:.1}", r.failures_per_s)),
                latency(rates.as_ref().and_then(|r| r.p50_ms)),
                latency(rates.as_ref().and_then(|r| r.p99_ms)),
                b.active.to_string(),
            ]
        })
        .collect();
    let mut out = format!(
        "raftlb top: {} nodes, over the last {seconds:.1} s{}\n\n",
        after.nodes.len(),
        if unreached.is_empty() {
            String::new()
        } else {
            format!("; not answering: node {unreached:?}")
        }
    );
    out.push_str(&table(
        &["node", "frontend", "req/s", "5xx/s", "p50", "p99", "open"],
        frontend_rows,
    ));
    out.push_str("\n\n");
    out.push_str(&table(
        &[
            "node", "pool", "backend", "req/s", "fail/s", "p50", "p99", "active",
        ],
        backend_rows,
    ));
    out
}

/// A latency bound in ms as `≤1.6 ms`; `max` past the last bound; `-`
/// when nothing was counted.
fn latency(bound_ms: Option<f64>) -> String {
    match bound_ms {
        None => "-".into(),
        Some(b) if b >= f64::MAX => "max".into(),
        Some(b) if b < 10.0 => format!("≤{b:.1} ms"),
        Some(b) if b < 10_000.0 => format!("≤{b:.0} ms"),
        Some(b) => format!("≤{:.0} s", b / 1000.0),
    }
}

/// The terminal in single-key mode while `top` runs, put back on drop.
struct Keys {
    saved: libc::termios,
}

impl Keys {
    /// Single-key, non-blocking reads from stdin, if it is a terminal.
    fn open() -> Option<Keys> {
        // SAFETY: isatty, tcgetattr and tcsetattr on stdin with a termios
        // this function owns; nothing else holds the terminal's settings.
        unsafe {
            if libc::isatty(libc::STDIN_FILENO) != 1 {
                return None;
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            // Ctrl-C arrives as a byte too (ISIG off), so the terminal is
            // always put back.
            raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG);
            raw.c_cc[libc::VMIN] = 0;
            raw.c_cc[libc::VTIME] = 0;
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) != 0 {
                return None;
            }
            Some(Keys { saved })
        }
    }

    /// Whether `q` (or Ctrl-C) was pressed since the last look.
    fn quit_pressed(&self) -> bool {
        let mut buf = [0u8; 16];
        match std::io::stdin().read(&mut buf) {
            Ok(n) => buf[..n].iter().any(|b| matches!(b, b'q' | b'Q' | 0x03)),
            Err(_) => false,
        }
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        // SAFETY: puts back the settings read in `open`.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_read_as_bounds() {
        assert_eq!(latency(None), "-");
        assert_eq!(latency(Some(1.6)), "≤1.6 ms");
        assert_eq!(latency(Some(51.2)), "≤51 ms");
        assert_eq!(latency(Some(13_107.2)), "≤13 s");
        assert_eq!(latency(Some(f64::MAX)), "max");
    }
}
