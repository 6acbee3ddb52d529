//! The VIP across leader changes: `drills` (failures under client load),
//! `transfer` (leadership handed over on request), `lease` (the fence
//! under freezes, returns and slow peers); the helpers they share.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fixture::*;

mod drills;
mod lease;
mod transfer;

/// Whether each node says it holds the VIP, by node id.
fn holders(admins: &[(u64, SocketAddr)]) -> Vec<u64> {
    admins
        .iter()
        .filter(|(_, admin)| vip_held_at(*admin))
        .map(|(id, _)| *id)
        .collect()
}

fn vip_held_at(admin: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&admin, Duration::from_millis(100))
    else {
        return false;
    };
    // A frozen node's kernel still accepts; never wait long for its answer.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    if write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let Some((_, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(body).is_ok_and(|s| s["vip"]["held"] == true)
}

/// One GET on a new connection to `address`; a refused connect is tried
/// once more, as a client with one retry would.
async fn request_once(address: SocketAddr) -> bool {
    for attempt in 0..2 {
        let connect =
            tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(address)).await;
        let Ok(Ok(mut stream)) = connect else {
            if attempt == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            continue;
        };
        if stream
            .write_all(b"GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
            .await
            .is_err()
        {
            return false;
        }
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer)).await;
        return matches!(read, Ok(Ok(_))) && answer.starts_with(b"HTTP/1.1 200");
    }
    false
}

/// Tries a GET every 20 ms, at most 200 times, until one is answered.
async fn answered_within_200_tries(address: SocketAddr) -> bool {
    for _ in 0..200 {
        if request_once(address).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// `raftlb ctl cluster transfer-leader TARGET` through every node.
async fn transfer_leader(cluster: &Cluster, target: u64) -> (i32, String, String) {
    let args = vec![
        "cluster".into(),
        "transfer-leader".into(),
        target.to_string(),
    ];
    ctl_async(cluster.endpoints(), args).await
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Three nodes with a `bind`-mode VIP over one backend, once exactly one
/// node holds the VIP.
struct VipCluster {
    _backend: HttpBackend,
    cluster: Cluster,
    admins: Vec<(u64, SocketAddr)>,
    vip: SocketAddr,
}

async fn vip_cluster() -> VipCluster {
    vip_cluster_with(NodeOptions::default()).await
}

/// As [`vip_cluster`], with other node settings besides the VIP.
async fn vip_cluster_with(options: NodeOptions) -> VipCluster {
    let ip = unique_ip();
    let backend = HttpBackend::start("a", ip).await;
    let vip: IpAddr = unique_ip();
    let options = NodeOptions {
        vip: Some(vip),
        ..options
    };
    let seed = one_frontend("http", 8080, "round_robin", &[backend.address], "");
    let cluster = Cluster::start_with(3, &seed, &options).await;
    let admins: Vec<(u64, SocketAddr)> = cluster.nodes.iter().map(|n| (n.id, n.admin)).collect();
    assert!(
        wait_until(Duration::from_secs(10), || holders(&admins).len() == 1).await,
        "no single VIP holder"
    );
    VipCluster {
        _backend: backend,
        cluster,
        admins,
        vip: SocketAddr::new(vip, 8080),
    }
}

/// Whether every node answers, names the same leader and has applied the
/// same log index.
fn settled(cluster: &Cluster) -> bool {
    let statuses: Option<Vec<serde_json::Value>> =
        cluster.nodes.iter().map(|n| n.try_status()).collect();
    let Some(statuses) = statuses else {
        return false;
    };
    statuses[0]["leader"].is_u64()
        && statuses.iter().all(|s| {
            s["leader"] == statuses[0]["leader"]
                && s["applied_index"] == statuses[0]["applied_index"]
        })
}

/// Asks every node whether it holds the VIP every 5 ms, on its own
/// thread (bounded to 120 s), counting samples with two claims.
struct HolderSampler {
    stop: Arc<AtomicBool>,
    double: Arc<AtomicUsize>,
    samples: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl HolderSampler {
    fn start(admins: &[(u64, SocketAddr)]) -> HolderSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let double = Arc::new(AtomicUsize::new(0));
        let samples = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, double, samples, admins) = (
                stop.clone(),
                double.clone(),
                samples.clone(),
                admins.to_vec(),
            );
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let now = holders(&admins);
                    if now.len() > 1 {
                        eprintln!("two VIP holders: {now:?}");
                        double.fetch_add(1, Ordering::Relaxed);
                    }
                    samples.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        HolderSampler {
            stop,
            double,
            samples,
            thread,
        }
    }

    /// Stops sampling: (samples with two holders, samples).
    fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler");
        (
            self.double.load(Ordering::Relaxed),
            self.samples.load(Ordering::Relaxed),
        )
    }
}

/// One GET through `address`; a failed attempt is tried once more after
/// `retry_after`, as a client with one retry would.
async fn request_with_retry(address: SocketAddr, retry_after: Duration) -> bool {
    if request_once(address).await {
        return true;
    }
    tokio::time::sleep(retry_after).await;
    request_once(address).await
}
