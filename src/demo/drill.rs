//! `raftlb demo --drill`: under a steady client load through the VIP, kill
//! the VIP holder with SIGKILL, and measure how long the VIP went
//! unanswered (from the kill to the answer of the first request sent after
//! it), who took over,
//! and how many requests failed. The killed node is restarted before the
//! next round.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::nodes::{NodeProcess, get};

/// Interval between the load's requests (each on a new connection).
const LOAD_INTERVAL: Duration = Duration::from_millis(5);
/// How long the VIP may stay unanswered before a round counts as failed.
const ROUND_LIMIT: Duration = Duration::from_secs(10);

/// What a drill measured.
#[derive(Debug, Default)]
pub struct DrillReport {
    /// Per round: the killed holder, the new holder, the time unanswered
    /// (`None`: the VIP never answered again within the limit).
    pub rounds: Vec<(u64, Option<u64>, Option<Duration>)>,
    /// Requests sent through the VIP during the drill.
    pub sent: usize,
    /// Of those, how many failed.
    pub failed: usize,
}

impl fmt::Display for DrillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut times: Vec<Duration> = self.rounds.iter().filter_map(|r| r.2).collect();
        times.sort();
        let pick = |q: f64| {
            let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len().max(1)) - 1;
            times
                .get(i)
                .map_or("-".into(), |d| format!("{} ms", d.as_millis()))
        };
        write!(
            f,
            "drill: {} rounds of kill -9 of the VIP holder; VIP unanswered p50 {} p99 {} max {}; \
             client requests failed {} of {}",
            self.rounds.len(),
            pick(0.5),
            pick(0.99),
            pick(1.0),
            self.failed,
            self.sent
        )
    }
}

/// Kills the holder `rounds` times under load through `vip`.
pub async fn kill_the_holder(
    nodes: &mut [NodeProcess],
    vip: SocketAddr,
    rounds: usize,
) -> DrillReport {
    // Answered requests: (sent, answered).
    let answers: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (answers, stop) = (answers.clone(), stop.clone());
        let deadline = Instant::now() + ROUND_LIMIT * (rounds as u32 + 1) * 2;
        tokio::spawn(async move {
            let (mut sent, mut failed) = (0, 0);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                sent += 1;
                let began = Instant::now();
                match get(vip, "/").await {
                    Some((200, _)) => answers
                        .lock()
                        .expect("answers")
                        .push((began, Instant::now())),
                    _ => failed += 1,
                }
                tokio::time::sleep(LOAD_INTERVAL).await;
            }
            (sent, failed)
        })
    };
    println!("drill: client load through http://{vip}/ for a few seconds before the first kill");
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut report = DrillReport::default();
    for round in 1..=rounds {
        let Some(index) = holder(nodes).await else {
            println!("round {round}: no single VIP holder found; stopping the drill");
            break;
        };
        let killed_id = nodes[index].id;
        let killed_at = Instant::now();
        nodes[index].kill().await;
        let answered = loop {
            let first = answers
                .lock()
                .expect("answers")
                .iter()
                .find(|(sent, _)| *sent > killed_at)
                .map(|(_, answered)| *answered);
            if let Some(first) = first {
                break Some(first - killed_at);
            }
            if killed_at.elapsed() > ROUND_LIMIT {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let taken_by = holder(nodes).await.map(|i| nodes[i].id);
        match (answered, taken_by) {
            (Some(gap), Some(new)) => println!(
                "round {round}: killed node {killed_id} (VIP holder); node {new} took over; \
                 VIP unanswered for {} ms",
                gap.as_millis()
            ),
            (Some(gap), None) => println!(
                "round {round}: killed node {killed_id}; VIP answered again after {} ms",
                gap.as_millis()
            ),
            (None, _) => println!(
                "round {round}: killed node {killed_id}; VIP NOT answered within {ROUND_LIMIT:?}"
            ),
        }
        report.rounds.push((killed_id, taken_by, answered));
        if let Err(error) = nodes[index].start() {
            println!("cannot restart node {killed_id}: {error}");
            break;
        }
        if let Err(error) = nodes[index].wait_ready().await {
            println!("{error}");
            break;
        }
        // The next kill starts from a settled cluster (one failure at a
        // time): the restarted node has caught up with the leader.
        if !settled(nodes).await {
            println!("the cluster did not settle after restarting node {killed_id}");
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Ok((sent, failed)) = load.await {
        report.sent = sent;
        report.failed = failed;
    }
    report
}

/// Waits up to 10 s until every node names the same leader and has applied
/// the same log index.
async fn settled(nodes: &[NodeProcess]) -> bool {
    let deadline = Instant::now() + ROUND_LIMIT;
    while Instant::now() < deadline {
        let mut views = Vec::new();
        for node in nodes {
            if let Some((200, body)) = get(node.admin, "/status").await
                && let Ok(status) = serde_json::from_str::<serde_json::Value>(&body)
            {
                views.push((status["leader"].clone(), status["applied_index"].clone()));
            }
        }
        if views.len() == nodes.len()
            && views[0].0.is_u64()
            && views.iter().all(|view| *view == views[0])
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The index of the one node that says it holds the VIP, waiting up to
/// 10 s for there to be exactly one.
async fn holder(nodes: &[NodeProcess]) -> Option<usize> {
    let deadline = Instant::now() + ROUND_LIMIT;
    while Instant::now() < deadline {
        let mut holding = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            if node.holds_vip().await {
                holding.push(i);
            }
        }
        if let [one] = holding.as_slice() {
            return Some(*one);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
