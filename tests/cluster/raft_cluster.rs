//! Three real nodes replicating one configuration through Raft.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use raftlb::config::{BackendSpec, ClusterSpec, PoolSpec};

use crate::fixture::*;

/// Which backend answers a GET through `node`'s frontend on 8080.
async fn answering_backend(node: &Node) -> Option<String> {
    let request = hyper::Request::get(node.url(8080, "/"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .ok()?;
    let client = client();
    let response = tokio::time::timeout(Duration::from_secs(3), client.request(request))
        .await
        .ok()?
        .ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    Some(
        response
            .headers()
            .get("x-backend")?
            .to_str()
            .ok()?
            .to_string(),
    )
}

async fn wait_serving(node: &Node, backend: &str) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    while Instant::now() < deadline {
        if answering_backend(node).await.as_deref() == Some(backend) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.dump_log();
    panic!("node {} never served backend {backend}", node.id);
}

fn write_file(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path.display().to_string()
}

#[tokio::test]
async fn forms_in_any_order_and_serves_what_a_follower_accepted() {
    let ip = unique_ip();
    let a = HttpBackend::start("a", ip).await;
    let b = HttpBackend::start("b", ip).await;
    let seed = one_frontend("http", 8080, "round_robin", &[a.address], "");
    let mut cluster = Cluster::create(3, &seed, &NodeOptions::default());
    // Highest id first: the lowest-id node, which forms the cluster, last.
    for index in [2, 1, 0] {
        cluster.nodes[index].launch();
        let node = &cluster.nodes[index];
        assert!(
            wait_until(Duration::from_secs(20), || node
                .admin_get("/readyz")
                .is_some())
            .await,
            "node {} did not start",
            node.id
        );
    }
    for node in &cluster.nodes {
        node.wait_ready().await;
        assert_eq!(
            answering_backend(node).await.as_deref(),
            Some("a"),
            "node {}",
            node.id
        );
    }
    let formed: usize = cluster
        .nodes
        .iter()
        .map(|n| n.log().matches("forming the cluster").count())
        .sum();
    assert_eq!(formed, 1, "exactly one node initializes");

    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let follower = &cluster.nodes[(leader + 1) % 3];
    let new_config = one_frontend("http", 8080, "round_robin", &[b.address], "");
    let file = write_file(&follower.dir, "new.toml", &new_config);
    let started = Instant::now();
    let (code, out, err) = ctl(&follower.api(), &["apply", "-f", &file]);
    let write_latency = started.elapsed();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("configuration version 2"), "{out}");
    let acknowledged = Instant::now();
    for node in &cluster.nodes {
        wait_serving(node, "b").await;
    }
    println!(
        "write through a follower acknowledged in {write_latency:?} (ctl process included); \
         all three nodes forwarding by it {:?} after the acknowledgement",
        acknowledged.elapsed()
    );
    let (code, out, _) = ctl(&cluster.endpoints(), &["get", "backends"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&b.address.to_string()) && !out.contains(&a.address.to_string()),
        "{out}"
    );
    let (code, out, _) = ctl(&follower.api(), &["status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("leader node") && out.contains("config version 2"),
        "{out}"
    );
    // Answered by a follower, every column of every node is filled: its
    // API address and applied index as the node itself reports them.
    for node in &cluster.nodes {
        let row = out
            .lines()
            .find(|line| line.split_whitespace().nth(2) == Some(&format!("{}:7100", node.ip)))
            .unwrap_or_else(|| panic!("no row for node {}: {out}", node.id));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[3], node.api(), "{out}");
        assert!(cells[4].parse::<u64>().is_ok_and(|i| i > 0), "{out}");
        assert!(cells[5] == "held" || cells[5] == "no", "{out}");
    }
}

#[tokio::test]
async fn a_killed_leader_is_replaced_and_catches_up_after_restart() {
    let ip = unique_ip();
    let a = HttpBackend::start("a", ip).await;
    let b = HttpBackend::start("b", ip).await;
    let seed = one_frontend("http", 8080, "round_robin", &[a.address], "");
    let mut cluster = Cluster::start(3, &seed).await;
    let old = cluster.wait_leader(Duration::from_secs(10)).await;
    let old_id = cluster.nodes[old].id;
    let killed = Instant::now();
    cluster.nodes[old].kill9();
    let new = cluster.wait_leader(Duration::from_secs(10)).await;
    let elected_after = killed.elapsed();
    assert_ne!(cluster.nodes[new].id, old_id);
    let new_config = one_frontend("http", 8080, "round_robin", &[b.address], "");
    let spec: ClusterSpec = toml::from_str(&new_config).expect("spec");
    let endpoints: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| n.is_running())
        .map(Node::api)
        .collect();
    let version = apply_spec(&endpoints, &spec)
        .await
        .expect("write after failover");
    let writable_after = killed.elapsed();
    println!(
        "leader kill -9: new leader after {elected_after:?}, first write acknowledged after {writable_after:?}"
    );
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        wait_serving(node, "b").await;
    }
    // The killed node comes back, serves its last applied configuration at
    // once, and catches up with what it missed.
    cluster.nodes[old].launch();
    cluster.nodes[old].wait_ready().await;
    wait_serving(&cluster.nodes[old], "b").await;
    assert_eq!(cluster.nodes[old].config_version(), Some(version));
    assert!(
        cluster.nodes[old]
            .log()
            .contains("raft state found on disk")
    );
}

#[tokio::test]
async fn a_follower_behind_a_purged_log_recovers_by_snapshot() {
    let ip = unique_ip();
    let a = HttpBackend::start("a", ip).await;
    let seed = one_frontend("http", 8080, "round_robin", &[a.address], "");
    let options = NodeOptions {
        raft: "snapshot_logs = 5\nkeep_logs_after_snapshot = 0".into(),
        ..Default::default()
    };
    let mut cluster = Cluster::start_with(3, &seed, &options).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let lagging = (leader + 1) % 3;
    cluster.nodes[lagging].kill9();
    let endpoints: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| n.is_running())
        .map(Node::api)
        .collect();
    let mut spec: ClusterSpec = toml::from_str(&seed).expect("spec");
    // A configuration larger than one snapshot chunk (256 KiB): the
    // snapshot travels in several messages. (Backends of an unused pool, never
    // contacted.)
    spec.pools.push(PoolSpec {
        name: "large".into(),
        algorithm: Default::default(),
        hash_key: None,
        health: Default::default(),
        backends: (0..2_000u32)
            .map(|i| BackendSpec {
                address: format!("127.1.{}.{}:9", i / 250, i % 250 + 1),
                weight: 1,
                admin_state: Default::default(),
                discovered: None,
            })
            .collect(),
        tls: None,
        protocol: Default::default(),
        sticky: None,
        discovery: None,
    });
    let mut version = 0;
    for weight in 2..=13 {
        spec.pools[0].backends[0].weight = weight;
        version = apply_spec(&endpoints, &spec)
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
    }
    cluster.nodes[lagging].launch();
    let node = &cluster.nodes[lagging];
    let caught_up = wait_until(Duration::from_secs(20), || {
        node.config_version() == Some(version)
    })
    .await;
    if !caught_up {
        cluster.dump_logs();
    }
    assert!(
        caught_up,
        "lagging node did not catch up to version {version}"
    );
    let log = node.log();
    let line = log
        .lines()
        .find(|l| l.contains("installing snapshot"))
        .expect("caught up without a snapshot");
    let bytes: u64 = line
        .split("bytes=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("snapshot size in the log line");
    assert!(
        bytes > 256 * 1024,
        "a snapshot of {bytes} bytes fits one chunk; the test wants several"
    );
    println!("follower recovered by a snapshot of {bytes} bytes (chunks of 256 KiB)");
    let (code, out, _) = ctl(&node.api(), &["get", "backends", "--local", "--json"]);
    assert_eq!(code, 0);
    assert!(out.contains("\"weight\":13"), "{out}");
}

#[tokio::test]
async fn a_full_restart_serves_the_same_configuration_without_a_second_bootstrap() {
    let ip = unique_ip();
    let a = HttpBackend::start("a", ip).await;
    let b = HttpBackend::start("b", ip).await;
    let seed = one_frontend("http", 8080, "round_robin", &[a.address], "");
    let mut cluster = Cluster::start(3, &seed).await;
    let endpoints: Vec<String> = cluster.nodes.iter().map(Node::api).collect();
    let spec: ClusterSpec =
        toml::from_str(&one_frontend("http", 8080, "round_robin", &[b.address], "")).expect("spec");
    let version = apply_spec(&endpoints, &spec).await.expect("write");
    for node in &cluster.nodes {
        wait_serving(node, "b").await;
    }
    for node in &mut cluster.nodes {
        node.kill9();
    }
    for node in &mut cluster.nodes {
        node.launch();
    }
    for node in &cluster.nodes {
        node.wait_ready().await;
        assert_eq!(node.config_version(), Some(version), "node {}", node.id);
        assert_eq!(
            answering_backend(node).await.as_deref(),
            Some("b"),
            "node {}",
            node.id
        );
        assert_eq!(
            node.log().matches("forming the cluster").count(),
            usize::from(node.id == 1)
        );
        assert!(node.log().matches("seed configuration committed").count() <= 1);
    }
}

#[tokio::test]
async fn nodes_are_added_and_removed_through_the_api() {
    let ip = unique_ip();
    let a = HttpBackend::start("a", ip).await;
    let seed = one_frontend("http", 8080, "round_robin", &[a.address], "");
    let cluster = Cluster::start(3, &seed).await;
    let members: Vec<(u64, std::net::IpAddr)> =
        cluster.nodes.iter().map(|n| (n.id, n.ip)).collect();
    let mut fourth = Node::create(4, unique_ip(), &members, &seed, &NodeOptions::default());
    fourth.launch();
    assert!(
        wait_until(Duration::from_secs(20), || fourth
            .admin_get("/readyz")
            .is_some())
        .await
    );
    assert_eq!(
        fourth.admin_get("/readyz").map(|r| r.0),
        Some(503),
        "not ready before it is added"
    );
    let raft_addr = format!("{}:7100", fourth.ip);
    let (code, out, err) = ctl(
        &cluster.endpoints(),
        &["cluster", "add-node", "4", &raft_addr, &fourth.api()],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("voters now: 1, 2, 3, 4"), "{out}");
    fourth.wait_ready().await;
    assert_eq!(answering_backend(&fourth).await.as_deref(), Some("a"));
    assert_eq!(fourth.config_version(), cluster.nodes[0].config_version());

    let (code, out, err) = ctl(&cluster.endpoints(), &["cluster", "remove-node", "4"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("voters now: 1, 2, 3"), "{out}");
    let spec: ClusterSpec = toml::from_str(&seed).expect("spec");
    let endpoints: Vec<String> = cluster.nodes.iter().map(Node::api).collect();
    apply_spec(&endpoints, &spec)
        .await
        .expect("cluster still writable");
    let (code, _, err) = ctl(&cluster.endpoints(), &["cluster", "remove-node", "9"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a member"), "{err}");
}

#[tokio::test]
async fn nothing_acknowledged_is_lost_while_leaders_are_killed() {
    let ip = unique_ip();
    let a = HttpBackend::start("a", ip).await;
    let seed = one_frontend("http", 8080, "round_robin", &[a.address], "");
    let mut cluster = Cluster::start(3, &seed).await;
    let admins: Vec<(u64, std::net::SocketAddr)> =
        cluster.nodes.iter().map(|n| (n.id, n.admin)).collect();
    let endpoints: Vec<String> = cluster.nodes.iter().map(Node::api).collect();

    // Watch every node's served version the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<HashMap<u64, Vec<u64>>>> = Arc::default();
    let sampler = {
        let (stop, seen) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(180);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                for (id, admin) in &admins {
                    if let Some(version) = version_at(*admin) {
                        seen.lock()
                            .expect("seen")
                            .entry(*id)
                            .or_default()
                            .push(version);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    let seed_value = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed_value);
    let kill_points = [rng.usize(5..15), rng.usize(20..30)];
    println!("kill points {kill_points:?} (rng seed {seed_value})");
    let mut spec: ClusterSpec = toml::from_str(&seed).expect("spec");
    let mut acknowledged: Vec<(usize, u64)> = Vec::new();
    let mut killed: Option<(usize, usize)> = None;
    for i in 1..=40 {
        spec.pools.push(PoolSpec {
            name: format!("marker-{i}"),
            algorithm: Default::default(),
            hash_key: None,
            health: Default::default(),
            backends: Vec::new(),
            tls: None,
            protocol: Default::default(),
            sticky: None,
            discovery: None,
        });
        let mut attempts = 0;
        loop {
            attempts += 1;
            assert!(attempts <= 60, "write {i} never acknowledged");
            match apply_spec(&endpoints, &spec).await {
                Ok(version) => {
                    acknowledged.push((i, version));
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        if kill_points.contains(&i) {
            let leader = cluster.wait_leader(Duration::from_secs(10)).await;
            cluster.nodes[leader].kill9();
            killed = Some((leader, i));
        }
        if let Some((index, at)) = killed
            && i == at + 3
        {
            cluster.nodes[index].launch();
            killed = None;
        }
    }
    if let Some((index, _)) = killed {
        cluster.nodes[index].launch();
    }
    let last_version = acknowledged.last().expect("writes").1;
    for node in &cluster.nodes {
        let caught_up = wait_until(Duration::from_secs(20), || {
            node.config_version() >= Some(last_version)
        })
        .await;
        assert!(
            caught_up,
            "node {} did not reach version {last_version}",
            node.id
        );
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");

    for pair in acknowledged.windows(2) {
        assert!(
            pair[1].1 > pair[0].1,
            "acknowledged versions must increase: {pair:?}"
        );
    }
    for node in &cluster.nodes {
        let (code, out, _) = ctl(&node.api(), &["get", "pools", "--local", "--json"]);
        assert_eq!(code, 0);
        for (i, _) in &acknowledged {
            assert!(
                out.contains(&format!("\"marker-{i}\"")),
                "node {} lost write {i}",
                node.id
            );
        }
    }
    let seen = seen.lock().expect("seen");
    for (id, versions) in seen.iter() {
        for pair in versions.windows(2) {
            assert!(
                pair[1] >= pair[0],
                "node {id} went from version {} back to {}",
                pair[0],
                pair[1]
            );
        }
    }
    println!(
        "{} writes acknowledged across 2 leader kills; {} version samples, none going backwards",
        acknowledged.len(),
        seen.values().map(Vec::len).sum::<usize>()
    );
}

/// Members named `NAME:PORT` (a StatefulSet's `raftlb-0.raftlb-peers:7100`)
/// are looked up at each connect: here `localhost`, one port per node.
#[tokio::test]
async fn members_given_by_name_form_a_cluster_and_fail_over() {
    let ip = unique_ip();
    let a = HttpBackend::start("a", ip).await;
    let b = HttpBackend::start("b", ip).await;
    let seed = one_frontend("http", 8080, "round_robin", &[a.address], "");
    let mut cluster = Cluster::create(3, &seed, &NodeOptions::default());
    let ports: Vec<u16> = (0..3)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port()
        })
        .collect();
    let members: Vec<String> = ports
        .iter()
        .zip(&cluster.nodes)
        .map(|(port, node)| format!("{} = \"localhost:{port}\"", node.id))
        .collect();
    for (node, port) in cluster.nodes.iter().zip(&ports) {
        let path = node.dir.join("node.toml");
        let text = std::fs::read_to_string(&path).expect("node.toml");
        let text: Vec<String> = text
            .lines()
            .map(|line| {
                if line.starts_with("raft_addr") {
                    format!("raft_addr = \"127.0.0.1:{port}\"")
                } else if line.starts_with("members") {
                    format!("members = {{ {} }}", members.join(", "))
                } else {
                    line.to_string()
                }
            })
            .collect();
        std::fs::write(&path, text.join("\n")).expect("node.toml");
    }
    for node in &mut cluster.nodes {
        node.launch();
    }
    for node in &cluster.nodes {
        node.wait_ready().await;
    }
    let old = cluster.wait_leader(Duration::from_secs(10)).await;
    let (_, listing, _) = ctl(&cluster.endpoints(), &["status"]);
    assert!(
        listing.contains(&format!("localhost:{}", ports[0])),
        "{listing}"
    );
    cluster.nodes[old].kill9();
    let new = cluster.wait_leader(Duration::from_secs(10)).await;
    assert_ne!(new, old);
    let spec: ClusterSpec =
        toml::from_str(&one_frontend("http", 8080, "round_robin", &[b.address], "")).expect("spec");
    let endpoints: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| n.is_running())
        .map(Node::api)
        .collect();
    apply_spec(&endpoints, &spec)
        .await
        .expect("a write after the failover");
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        wait_serving(node, "b").await;
    }
}
