//! The control plane at scale: how soon every node of a three-node cluster
//! serves a change, with a small configuration (10 backends in 1 pool) as
//! the baseline and a large one (10,000 backends in 100 pools), in one run.
//!
//! `cargo bench --bench control_plane` (options after `--`: `--changes N`,
//! default 100; `--pools N --per-pool N` for the large case, default 100 ×
//! 100). For each case it starts three `raftlb node` processes on
//! 127.0.0.x, applies the whole configuration (time until every node
//! serves it), then makes N single weight changes one after another and
//! measures, for each, the time from its acknowledgement until all three
//! nodes serve it (`/version`, polled every 0.5 ms). It also reads from the
//! nodes' metrics the bytes the state machine wrote per change, the size of
//! the last snapshot (one is taken every 50 entries here) and the time the
//! last routing table took to compile. Bounded: every wait gives up after
//! 30 s.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raftlb::proto::v1 as pb;
use raftlb::proto::v1::control_service_client::ControlServiceClient;

const LIMIT: Duration = Duration::from_secs(30);

fn option(flag: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Three node processes and their folder; stopped (SIGKILL, by PID) on drop.
struct Cluster {
    nodes: Vec<Child>,
    admins: Vec<SocketAddr>,
    apis: Vec<String>,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_cluster(case: u8) -> Cluster {
    let ips: Vec<IpAddr> = (1..=3)
        .map(|n| IpAddr::V4(Ipv4Addr::new(127, 77, case, n)))
        .collect();
    let dir = std::env::temp_dir().join(format!("raftlb-bench-cp-{}-{case}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let members: Vec<String> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| format!("{} = \"{ip}:7100\"", i + 1))
        .collect();
    let mut nodes = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let node_dir = dir.join(format!("node{}", i + 1));
        std::fs::create_dir_all(&node_dir).expect("node dir");
        let toml = format!(
            "id = {}\nraft_addr = \"{ip}:7100\"\napi_addr = \"{ip}:7200\"\nadmin_addr = \"{ip}:7300\"\n\
             serve_ip = \"{ip}\"\ndata_dir = \"data\"\n\n[cluster]\nmembers = {{ {} }}\nseed = \"cluster.toml\"\n\n\
             [raft]\nsnapshot_logs = 50\n\n[vip]\nmode = \"none\"\n",
            i + 1,
            members.join(", ")
        );
        std::fs::write(node_dir.join("node.toml"), toml).expect("node.toml");
        std::fs::write(node_dir.join("cluster.toml"), seed()).expect("cluster.toml");
        let log = std::fs::File::create(node_dir.join("node.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_raftlb"))
            .args(["node", "--config"])
            .arg(node_dir.join("node.toml"))
            .current_dir(&node_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn raftlb");
        nodes.push(child);
    }
    let cluster = Cluster {
        nodes,
        admins: ips.iter().map(|ip| SocketAddr::new(*ip, 7300)).collect(),
        apis: ips.iter().map(|ip| format!("{ip}:7200")).collect(),
        dir,
    };
    let ready = wait(|| {
        cluster
            .admins
            .iter()
            .all(|a| http_get(*a, "/readyz").is_some_and(|(code, _)| code == 200))
    });
    assert!(ready.is_some(), "cluster did not become ready");
    cluster
}

fn seed() -> String {
    "[[frontend]]\nname = \"bench\"\nport = 18080\nprotocol = \"tcp\"\npool = \"p0\"\n\n\
     [[pool]]\nname = \"p0\"\n  [[pool.backend]]\n  address = \"127.0.0.1:10000\"\n"
        .to_string()
}

/// The configuration of a case: the seed's frontend over `pools` pools of
/// `per_pool` backends each (weighted round robin at weight 256: the
/// heaviest balancer to build).
fn config(pools: usize, per_pool: usize) -> pb::ClusterConfig {
    let mut spec: raftlb::config::ClusterSpec = toml::from_str(&seed()).expect("seed");
    spec.pools.clear();
    for p in 0..pools {
        let mut pool: raftlb::config::PoolSpec = toml::from_str(&format!(
            "name = \"p{p}\"\nalgorithm = \"weighted_round_robin\"\n"
        ))
        .expect("pool");
        for b in 0..per_pool {
            let n = p * per_pool + b;
            pool.backends.push(raftlb::config::BackendSpec {
                address: format!(
                    "127.{}.{}.{}:8080",
                    100 + n / 65_536,
                    (n / 256) % 256,
                    n % 256
                ),
                weight: 256,
                admin_state: Default::default(),
                discovered: None,
            });
        }
        spec.pools.push(pool);
    }
    raftlb::api::convert::to_proto(&spec)
}

fn http_get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

fn served_version(admin: SocketAddr) -> Option<u64> {
    let (_, body) = http_get(admin, "/version")?;
    serde_json::from_str::<serde_json::Value>(&body).ok()?["config_version"].as_u64()
}

fn metric(admin: SocketAddr, name: &str) -> f64 {
    let Some((_, text)) = http_get(admin, "/metrics") else {
        return f64::NAN;
    };
    text.lines()
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            (series == name).then(|| value.parse().ok())?
        })
        .unwrap_or(f64::NAN)
}

/// Polls `check` every 0.5 ms for at most [`LIMIT`]; the time it took.
fn wait(mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < LIMIT {
        if check() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    None
}

fn served_everywhere(cluster: &Cluster, version: u64) -> Option<Duration> {
    wait(|| {
        cluster
            .admins
            .iter()
            .all(|a| served_version(*a).is_some_and(|v| v >= version))
    })
}

struct Figures {
    label: String,
    apply_ack: Duration,
    apply_served: Duration,
    change_ack_p50: Duration,
    change_served_p50: Duration,
    change_served_p99: Duration,
    change_served_max: Duration,
    bytes_per_change: f64,
    snapshot_bytes: f64,
    compile_us: f64,
}

async fn measure(case: u8, label: &str, pools: usize, per_pool: usize, changes: usize) -> Figures {
    let cluster = start_cluster(case);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.apis[0]))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = ControlServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);

    let started = Instant::now();
    let reply = client
        .apply_config(pb::ApplyConfigRequest {
            config: Some(config(pools, per_pool)),
            if_version: None,
            dry_run: false,
            request_id: format!("bench-{case}-apply"),
            note: None,
        })
        .await
        .expect("apply")
        .into_inner();
    let apply_ack = started.elapsed();
    served_everywhere(&cluster, reply.version).expect("applied everywhere");
    let apply_served = started.elapsed();

    // Node 1's figures: every node keeps its own snapshot and compiles its
    // own table, whether it leads or not.
    let node1_admin = cluster.admins[0];
    let bytes_before: f64 = cluster
        .admins
        .iter()
        .map(|a| metric(*a, "raftlb_state_written_bytes_total"))
        .sum();
    let writes_before: f64 = cluster
        .admins
        .iter()
        .map(|a| metric(*a, "raftlb_state_writes_total"))
        .sum();
    let mut acks = Vec::new();
    let mut served = Vec::new();
    for k in 0..changes {
        let pool = k % pools;
        let backend = (k / pools) % per_pool;
        let n = pool * per_pool + backend;
        let started = Instant::now();
        let reply = client
            .set_weight(pb::SetWeightRequest {
                pool: format!("p{pool}"),
                address: format!(
                    "127.{}.{}.{}:8080",
                    100 + n / 65_536,
                    (n / 256) % 256,
                    n % 256
                ),
                weight: 1 + (k % 200) as u32,
                request_id: format!("bench-{case}-change-{k}"),
            })
            .await
            .expect("set weight")
            .into_inner();
        acks.push(started.elapsed());
        let acked = Instant::now();
        served_everywhere(&cluster, reply.version).expect("served everywhere");
        served.push(acked.elapsed());
    }
    let bytes_after: f64 = cluster
        .admins
        .iter()
        .map(|a| metric(*a, "raftlb_state_written_bytes_total"))
        .sum();
    let writes_after: f64 = cluster
        .admins
        .iter()
        .map(|a| metric(*a, "raftlb_state_writes_total"))
        .sum();
    acks.sort();
    served.sort();
    let at = |sorted: &[Duration], q: f64| {
        sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
    };
    Figures {
        label: label.to_string(),
        apply_ack,
        apply_served,
        change_ack_p50: at(&acks, 0.5),
        change_served_p50: at(&served, 0.5),
        change_served_p99: at(&served, 0.99),
        change_served_max: at(&served, 1.0),
        bytes_per_change: (bytes_after - bytes_before) / (writes_after - writes_before).max(1.0),
        snapshot_bytes: metric(node1_admin, "raftlb_snapshot_bytes"),
        compile_us: metric(node1_admin, "raftlb_routing_table_compile_microseconds"),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let changes = option("--changes", 100);
    let pools = option("--pools", 100);
    let per_pool = option("--per-pool", 100);
    let small = measure(1, "10 backends, 1 pool", 1, 10, changes).await;
    let large = measure(
        2,
        &format!("{} backends, {pools} pools", pools * per_pool),
        pools,
        per_pool,
        changes,
    )
    .await;
    println!(
        "\n{changes} weight changes each, one after another; times from the acknowledgement until all 3 nodes serve it\n"
    );
    println!(
        "| configuration | apply: ack ms | apply: served everywhere ms | change: ack p50 ms | change served p50 ms | p99 ms | max ms | bytes written per change (per node) | snapshot bytes | last compile µs |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in [&small, &large] {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} |",
            f.label,
            ms(f.apply_ack),
            ms(f.apply_served),
            ms(f.change_ack_p50),
            ms(f.change_served_p50),
            ms(f.change_served_p99),
            ms(f.change_served_max),
            f.bytes_per_change,
            f.snapshot_bytes,
            f.compile_us
        );
    }
    println!(
        "\nratio large / small: change served p99 {:.2}x, apply served {:.1}x",
        large.change_served_p99.as_secs_f64() / small.change_served_p99.as_secs_f64(),
        large.apply_served.as_secs_f64() / small.apply_served.as_secs_f64()
    );
}
