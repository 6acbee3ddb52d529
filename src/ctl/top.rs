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
use crate::traffic::latency_quantile;

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

/// One frontend's figures over an interval.
struct FrontendRates {
    node: u64,
    name: String,
    requests_per_s: f64,
    errors_per_s: f64,
    p50: Option<f64>,
    p99: Option<f64>,
    open: i64,
}

fn frontend_rates(before: &Sample, after: &Sample) -> Vec<FrontendRates> {
    let seconds = after.at.duration_since(before.at).as_secs_f64().max(0.001);
    let earlier: BTreeMap<(u64, &str), &pb::FrontendTraffic> = before
        .nodes
        .iter()
        .flat_map(|n| {
            n.frontends
                .iter()
                .map(move |f| ((n.id, f.name.as_str()), f))
        })
        .collect();
    let mut rates = Vec::new();
    for node in &after.nodes {
        for now in &node.frontends {
            let then = earlier.get(&(node.id, now.name.as_str()));
            let (requests, errors, counts) = then.map_or((0, 0, &[][..]), |t| {
                (t.requests, t.errors, t.latency_counts.as_slice())
            });
            let quantile =
                |q| latency_quantile(&now.latency_bounds, counts, &now.latency_counts, q);
            rates.push(FrontendRates {
                node: node.id,
                name: now.name.clone(),
                requests_per_s: now.requests.saturating_sub(requests) as f64 / seconds,
                errors_per_s: now.errors.saturating_sub(errors) as f64 / seconds,
                p50: quantile(0.5),
                p99: quantile(0.99),
                open: now.open,
            });
        }
    }
    rates
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
    let backends: Vec<(u64, &pb::BackendTraffic, f64, f64)> = after
        .nodes
        .iter()
        .flat_map(|n| n.backends.iter().map(move |b| (n.id, b)))
        .map(|(node, now)| {
            let then = earlier.get(&(node, now.pool.as_str(), now.address.as_str()));
            let (requests, failures) = then.map_or((0, 0), |t| (t.requests, t.failures));
            (
                node,
                now,
                now.requests.saturating_sub(requests) as f64 / seconds,
                now.failures.saturating_sub(failures) as f64 / seconds,
            )
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
                serde_json::json!({
                    "node": f.node, "frontend": f.name, "requests_per_s": f.requests_per_s,
                    "errors_per_s": f.errors_per_s, "p50_s": f.p50, "p99_s": f.p99, "open": f.open,
                })
            })
            .collect();
        let backends: Vec<_> = backends
            .iter()
            .map(|(node, b, requests, failures)| {
                serde_json::json!({
                    "node": node, "pool": b.pool, "backend": b.address,
                    "requests_per_s": requests, "failures_per_s": failures, "active": b.active,
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
                format!("{:.1}", f.requests_per_s),
                format!("{:.1}", f.errors_per_s),
                latency(f.p50),
                latency(f.p99),
                f.open.to_string(),
            ]
        })
        .collect();
    let backend_rows = backends
        .iter()
        .map(|(node, b, requests, failures)| {
            vec![
                node.to_string(),
                b.pool.clone(),
                b.address.clone(),
                format!("{requests:.1}"),
                format!("{failures:.1}"),
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
        &["node", "pool", "backend", "req/s", "fail/s", "active"],
        backend_rows,
    ));
    out
}

/// A latency bound as `≤1.6 ms`; `max` past the last bound; `-` when
/// nothing was counted.
fn latency(bound: Option<f64>) -> String {
    match bound {
        None => "-".into(),
        Some(b) if b >= f64::MAX => "max".into(),
        Some(b) if b < 0.01 => format!("≤{:.1} ms", b * 1000.0),
        Some(b) if b < 10.0 => format!("≤{:.0} ms", b * 1000.0),
        Some(b) => format!("≤{b:.0} s"),
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
            raw.c_lflag &= !(libc::ICANON | libc::ECHO);
            raw.c_cc[libc::VMIN] = 0;
            raw.c_cc[libc::VTIME] = 0;
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) != 0 {
                return None;
            }
            Some(Keys { saved })
        }
    }

    /// Whether `q` was pressed since the last look.
    fn quit_pressed(&self) -> bool {
        let mut buf = [0u8; 16];
        match std::io::stdin().read(&mut buf) {
            Ok(n) => buf[..n].iter().any(|b| *b == b'q' || *b == b'Q'),
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
        assert_eq!(latency(Some(0.0016)), "≤1.6 ms");
        assert_eq!(latency(Some(0.0512)), "≤51 ms");
        assert_eq!(latency(Some(13.1)), "≤13 s");
        assert_eq!(latency(Some(f64::MAX)), "max");
    }
}
