//! Active and passive health, and the cluster-wide committed view.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::StatusCode;

use crate::fixture::*;

/// A pool over `backends` with HTTP checks on /healthz.
fn checked(backends: &[std::net::SocketAddr], health: &str) -> String {
    one_frontend("http", 8080, "round_robin", backends, "").replace(
        "algorithm = \"round_robin\"\n",
        &format!("algorithm = \"round_robin\"\n  [pool.health]\n  check = \"http\"\n  path = \"/healthz\"\n{health}\n"),
    )
}

fn backend_view(node: &Node, address: std::net::SocketAddr, field: &str) -> Option<String> {
    let status = node.try_status()?;
    status["backends"]
        .as_array()?
        .iter()
        .find(|b| b["address"] == address.to_string())?[field]
        .as_str()
        .map(str::to_string)
}

fn switch() -> Arc<HealthSwitch> {
    Arc::new(HealthSwitch::default())
}

async fn backend(name: &str, ip: std::net::IpAddr, health: &Arc<HealthSwitch>) -> HttpBackend {
    backend_at(name, std::net::SocketAddr::new(ip, 0), health).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_is_dropped_by_every_node_and_comes_back() {
    let ip = unique_ip();
    let switches = [switch(), switch(), switch()];
    let a = backend("a", ip, &switches[0]).await;
    let b = backend("b", ip, &switches[1]).await;
    let c = backend("c", ip, &switches[2]).await;
    let (interval, timeout, rise, fall) = (200u64, 100u64, 2u64, 2u64);
    let health = format!(
        "  interval_ms = {interval}\n  timeout_ms = {timeout}\n  rise = {rise}\n  fall = {fall}"
    );
    let cluster = Cluster::start(3, &checked(&[a.address, b.address, c.address], &health)).await;
    for node in &cluster.nodes {
        let up = wait_until(Duration::from_secs(10), || {
            backend_view(node, b.address, "health").as_deref() == Some("up")
        })
        .await;
        assert!(up, "node {} never saw b up", node.id);
    }
    // Bounded client load through every node while b dies and returns.
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for node in &cluster.nodes {
        let (stop, failed, url) = (stop.clone(), failed.clone(), node.url(8080, "/"));
        load.push(tokio::spawn(async move {
            let client = client();
            for _ in 0..2_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let request = hyper::Request::get(&url)
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .expect("request");
                match tokio::time::timeout(Duration::from_secs(5), client.request(request)).await {
                    Ok(Ok(response)) if response.status() == StatusCode::OK => {}
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let address = b.address;
    let killed = Instant::now();
    b.kill().await;
    let bound = Duration::from_millis(fall * interval + timeout);
    for node in &cluster.nodes {
        let down = wait_until(Duration::from_secs(10), || {
            backend_view(node, address, "health").as_deref() == Some("down")
        })
        .await;
        assert!(down, "node {} never marked b down", node.id);
    }
    let dropped_after = killed.elapsed();
    println!(
        "killed backend marked down on all three nodes after {dropped_after:?} (fall x interval + timeout = {bound:?})"
    );
    assert!(
        dropped_after < bound * 4,
        "took {dropped_after:?}, bound {bound:?}"
    );

    let revived = Instant::now();
    let b = backend_at("b", address, &switches[1]).await;
    for node in &cluster.nodes {
        let up = wait_until(Duration::from_secs(10), || {
            backend_view(node, address, "health").as_deref() == Some("up")
        })
        .await;
        assert!(up, "node {} never saw b back", node.id);
    }
    println!(
        "restarted backend up on all three nodes after {:?} (rise x interval = {:?})",
        revived.elapsed(),
        Duration::from_millis(rise * interval)
    );
    assert!(
        wait_until(Duration::from_secs(5), || b.count() > 0).await,
        "no traffic returned to b"
    );
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load");
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "client requests failed");
    // Committed by the majority as well.
    let committed = wait_until(Duration::from_secs(5), || {
        backend_view(&cluster.nodes[0], address, "committed").as_deref() == Some("up")
    })
    .await;
    assert!(committed);
}

async fn backend_at(
    name: &str,
    address: std::net::SocketAddr,
    health: &Arc<HealthSwitch>,
) -> HttpBackend {
    HttpBackend::start_at(
        name,
        address,
        BackendBehaviour {
            health: Some(health.clone()),
            ..Default::default()
        },
    )
    .await
}

#[tokio::test]
async fn one_node_seeing_a_backend_down_changes_only_its_own_traffic() {
    let ip = unique_ip();
    let (sa, sb) = (switch(), switch());
    let a = backend("a", ip, &sa).await;
    let b = backend("b", ip, &sb).await;
    let health = "  interval_ms = 100\n  timeout_ms = 80\n  rise = 1\n  fall = 1";
    let cluster = Cluster::start(3, &checked(&[a.address, b.address], health)).await;
    for node in &cluster.nodes {
        assert!(
            wait_until(Duration::from_secs(10), || backend_view(
                node,
                b.address,
                "committed"
            )
            .as_deref()
                == Some("up"))
            .await,
            "b never committed up"
        );
    }
    // b fails its checks only for node 1 (told apart by source address).
    sb.failing_for
        .lock()
        .expect("switch")
        .push(cluster.nodes[0].ip);
    let n1 = &cluster.nodes[0];
    assert!(
        wait_until(Duration::from_secs(5), || backend_view(
            n1, b.address, "health"
        )
        .as_deref()
            == Some("down"))
        .await
    );
    let counts = answers(n1, 6).await;
    assert_eq!(counts.get("a"), Some(&6), "node 1 still uses b: {counts:?}");
    let counts = answers(&cluster.nodes[1], 6).await;
    assert_eq!(
        counts.get("b"),
        Some(&3),
        "node 2 stopped using b: {counts:?}"
    );
    // A minority sees it down: the committed view stays up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for node in &cluster.nodes {
        assert_eq!(
            backend_view(node, b.address, "committed").as_deref(),
            Some("up"),
            "node {}",
            node.id
        );
    }
    // Two of three: the committed view becomes down.
    sb.failing_for
        .lock()
        .expect("switch")
        .push(cluster.nodes[1].ip);
    for node in &cluster.nodes {
        let down = wait_until(Duration::from_secs(10), || {
            backend_view(node, b.address, "committed").as_deref() == Some("down")
        })
        .await;
        assert!(down, "node {} never saw b committed down", node.id);
    }
    let (code, out, _) = ctl(&cluster.endpoints(), &["get", "backends"]);
    assert_eq!(code, 0);
    let line = out
        .lines()
        .find(|l| l.contains(&b.address.to_string()))
        .expect("b listed");
    // pool, address, weight, admin_state, health, source
    assert_eq!(line.split_whitespace().nth(4), Some("down"), "{out}");
    // Node 3 still checks b up itself, and forwards by its own view.
    assert_eq!(
        backend_view(&cluster.nodes[2], b.address, "health").as_deref(),
        Some("up")
    );
}

#[tokio::test]
async fn a_flapping_backend_makes_a_bounded_number_of_raft_entries() {
    let ip = unique_ip();
    let (sa, sb) = (switch(), switch());
    let a = backend("a", ip, &sa).await;
    let b = backend("b", ip, &sb).await;
    let health = "  interval_ms = 50\n  timeout_ms = 40\n  rise = 1\n  fall = 1";
    let cluster = Cluster::start(3, &checked(&[a.address, b.address], health)).await;
    let node = &cluster.nodes[0];
    assert!(
        wait_until(Duration::from_secs(10), || backend_view(
            node,
            b.address,
            "committed"
        )
        .as_deref()
            == Some("up"))
        .await
    );
    let applied = |node: &Node| {
        node.status()["applied_index"]
            .as_u64()
            .expect("applied index")
    };
    let before = applied(node);
    // Flap every 100 ms for 10 s.
    for _ in 0..100 {
        let now = sb.unhealthy.load(Ordering::Relaxed);
        sb.unhealthy.store(!now, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sb.unhealthy.store(false, Ordering::Relaxed);
    let entries = applied(node) - before;
    println!(
        "backend flapping every 100 ms for 10 s: {entries} raft entries (damping 1 s per backend)"
    );
    // One commit per second at most (plus the one a leader may owe at the end).
    assert!(
        entries <= 12,
        "{entries} raft entries for one flapping backend"
    );
}

#[tokio::test]
async fn passive_ejection_cap_and_panic_mode() {
    let ip = unique_ip();
    let (sa, sb) = (switch(), switch());
    let good = backend("good", ip, &sa).await;
    let failing = HttpBackend::start_with(
        "failing",
        ip,
        BackendBehaviour {
            status: 500,
            health: Some(sb.clone()),
            ..Default::default()
        },
    )
    .await;
    // Checks every 10 s: only real traffic can notice the 500s in time.
    let health =
        "  interval_ms = 2000\n  timeout_ms = 500\n  rise = 1\n  fall = 1\n  eject_5xx_after = 3";
    let node = Node::start(&checked(&[good.address, failing.address], health)).await;
    for address in [good.address, failing.address] {
        assert!(
            wait_until(Duration::from_secs(5), || backend_view(
                &node, address, "health"
            )
            .as_deref()
                == Some("up"))
            .await
        );
    }
    let client = client();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(get(&client, &node.url(8080, "/"), &[]).await.0.as_u16());
    }
    let five_hundreds = statuses.iter().filter(|&&s| s == 500).count();
    if five_hundreds != 3 {
        node.dump_log();
    }
    assert_eq!(
        five_hundreds, 3,
        "ejected after 3 answers of 500: {statuses:?}"
    );
    let ejected = node.status()["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .any(|b| b["address"] == failing.address.to_string() && b["ejected"] == true);
    assert!(ejected, "the failing backend is not shown ejected");
    assert!(
        node.log().contains("backend ejected: pool=pool"),
        "no grep-able log line"
    );
    // Both failing their checks: the pool fails open rather than answering 503.
    drop(node);
    let (sc, sd) = (switch(), switch());
    let c = backend("c", ip, &sc).await;
    let d = backend("d", ip, &sd).await;
    let health = "  interval_ms = 100\n  timeout_ms = 80\n  rise = 1\n  fall = 1";
    let node = Node::start(&checked(&[c.address, d.address], health)).await;
    sc.unhealthy.store(true, Ordering::Relaxed);
    sd.unhealthy.store(true, Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(5), || backend_view(
            &node, d.address, "health"
        )
        .as_deref()
            == Some("down")
            && backend_view(&node, c.address, "health").as_deref()
                == Some("down"))
        .await
    );
    let counts = answers(&node, 4).await;
    assert_eq!(counts.values().sum::<usize>(), 4, "{counts:?}");
    assert!(
        node.metric("raftlb_pool_panic_picks_total{pool=\"pool\"}")
            .unwrap_or(0.0)
            >= 4.0
    );
    assert!(node.log().contains("pool panic: pool=pool"));
}

#[tokio::test]
async fn a_restarted_node_serves_with_the_committed_view_from_its_first_request() {
    let ip = unique_ip();
    let (sa, sb) = (switch(), switch());
    let a = backend("a", ip, &sa).await;
    let b = backend("b", ip, &sb).await;
    sb.unhealthy.store(true, Ordering::Relaxed);
    // Slow checks (3 passes 1 s apart) so a restarted node cannot have
    // judged b itself before its first requests.
    let health = "  interval_ms = 1000\n  timeout_ms = 200\n  rise = 3\n  fall = 1";
    let mut cluster = Cluster::start(3, &checked(&[a.address, b.address], health)).await;
    for node in &cluster.nodes {
        for (address, view) in [(a.address, "up"), (b.address, "down")] {
            assert!(
                wait_until(Duration::from_secs(15), || backend_view(
                    node,
                    address,
                    "committed"
                )
                .as_deref()
                    == Some(view))
                .await,
                "node {} never saw {address} committed {view}",
                node.id
            );
        }
    }
    let restarted = &mut cluster.nodes[2];
    restarted.kill9();
    restarted.launch();
    restarted.wait_ready().await;
    assert_eq!(
        backend_view(restarted, b.address, "health").as_deref(),
        Some("down"),
        "did not start from the committed view"
    );
    let status_before = restarted.status()["backends"].clone();
    let counts = answers(restarted, 6).await;
    assert_eq!(counts.get("a"), Some(&6), "{counts:?} {status_before}");
}
