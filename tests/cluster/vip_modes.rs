//! The `script` and `netlink` VIP modes (the drills in network namespaces
//! are in `netns_drills`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::fixture::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_mode_runs_the_hooks_on_acquire_and_release() {
    let backend = HttpBackend::start("a", unique_ip()).await;
    let vip = unique_ip();
    // In a directory of its own, removed at the end: a hook that runs
    // after that finds no file to append to.
    let dir =
        std::env::temp_dir().join(format!("raftlb-vip-events-{}-{}", std::process::id(), vip));
    std::fs::create_dir_all(&dir).expect("hook dir");
    let events = dir.join("events");
    let log = events.display();
    let options = NodeOptions {
        vip_section: Some(format!(
            "mode = \"script\"\naddress = \"{vip}\"\n\
             on_acquire = 'echo \"$RAFTLB_EVENT $RAFTLB_NODE_ID $RAFTLB_VIP\" >> {log}'\n\
             on_release = 'echo \"$RAFTLB_EVENT $RAFTLB_NODE_ID $RAFTLB_VIP\" >> {log}'\n"
        )),
        ..Default::default()
    };
    let seed = one_frontend("http", 8080, "round_robin", &[backend.address], "");
    let mut cluster = Cluster::start_with(3, &seed, &options).await;
    let read = || std::fs::read_to_string(&events).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(10), || read().lines().count() == 1).await,
        "no acquire hook ran: {:?}",
        read()
    );
    let first = read();
    let holder: u64 = first
        .split_whitespace()
        .nth(1)
        .and_then(|id| id.parse().ok())
        .expect("a node id");
    assert_eq!(first, format!("acquire {holder} {vip}\n"));
    // Graceful stop of the holder: its release hook runs, then another
    // node's acquire hook.
    let index = cluster
        .nodes
        .iter()
        .position(|n| n.id == holder)
        .expect("holder");
    cluster.nodes[index].signal("TERM");
    let handed_over = wait_until(Duration::from_secs(10), || read().lines().count() == 3).await;
    if !handed_over {
        cluster.dump_logs();
    }
    assert!(handed_over, "hooks: {:?}", read());
    let lines: Vec<String> = read().lines().map(str::to_string).collect();
    println!("script hooks ran: {lines:?}");
    assert_eq!(lines[1], format!("release {holder} {vip}"));
    assert!(
        lines[2].starts_with("acquire ") && !lines[2].starts_with(&format!("acquire {holder} "))
    );
    assert_eq!(
        cluster.nodes[index]
            .wait_exit(Duration::from_secs(15))
            .await,
        Some(0)
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_script_hook_delays_neither_the_vip_nor_its_release() {
    let backend = HttpBackend::start("a", unique_ip()).await;
    let vip = unique_ip();
    // In a directory of its own, removed at the end: a hook that runs
    // after that finds no file to append to.
    let dir = std::env::temp_dir().join(format!("raftlb-slow-hook-{}-{}", std::process::id(), vip));
    std::fs::create_dir_all(&dir).expect("hook dir");
    let events = dir.join("events");
    let log = events.display();
    let options = NodeOptions {
        vip_section: Some(format!(
            "mode = \"script\"\naddress = \"{vip}\"\nscript_timeout_ms = 10000\n\
             on_acquire = 'echo \"start $RAFTLB_NODE_ID\" >> {log}; sleep 3; echo \"acquired $RAFTLB_NODE_ID\" >> {log}'\n\
             on_release = 'echo \"released $RAFTLB_NODE_ID\" >> {log}'\n"
        )),
        ..Default::default()
    };
    let seed = one_frontend("http", 8080, "round_robin", &[backend.address], "");
    let cluster = Cluster::start_with(3, &seed, &options).await;
    let read = || std::fs::read_to_string(&events).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(10), || read().starts_with("start ")).await,
        "no acquire hook started: {:?}",
        read()
    );
    let hook_started = Instant::now();
    let holder: u64 = read()
        .split_whitespace()
        .nth(1)
        .and_then(|id| id.parse().ok())
        .expect("a node id");
    // The VIP serves while its 3 s hook still runs.
    let address = SocketAddr::new(vip, 8080);
    let answers =
        || std::net::TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_ok();
    assert!(
        wait_until(Duration::from_secs(1), answers).await,
        "the VIP waited for its acquire hook"
    );
    // Cut the holder off (freeze both followers): the lease runs out and
    // the VIP is released at once, the hook still running.
    let followers: Vec<&Node> = cluster.nodes.iter().filter(|n| n.id != holder).collect();
    for follower in &followers {
        follower.signal("STOP");
    }
    let frozen = Instant::now();
    let released = wait_until(Duration::from_secs(1), || !answers()).await;
    let release_took = frozen.elapsed();
    let hook_still_running = !read().contains("acquired");
    for follower in &followers {
        follower.signal("CONT");
    }
    assert!(
        released,
        "the VIP stayed up without a lease while a hook ran"
    );
    assert!(
        hook_still_running || hook_started.elapsed() < Duration::from_secs(3),
        "the hook finished before the check: {:?}",
        read()
    );
    println!(
        "VIP released {release_took:?} after losing its quorum, its 3 s acquire hook still running"
    );
    // The release hook runs after the acquire hook, in order.
    assert!(
        wait_until(Duration::from_secs(10), || read()
            .contains(&format!("released {holder}")))
        .await,
        "{:?}",
        read()
    );
    let lines: Vec<String> = read().lines().map(str::to_string).collect();
    let acquired = lines
        .iter()
        .position(|l| *l == format!("acquired {holder}"));
    let released_at = lines
        .iter()
        .position(|l| *l == format!("released {holder}"));
    assert!(acquired < released_at, "hooks out of order: {lines:?}");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn netlink_mode_refuses_to_start_without_its_interface_or_privileges() {
    let backend = HttpBackend::start("a", unique_ip()).await;
    let ip = unique_ip();
    let options = NodeOptions {
        vip_section: Some(
            "mode = \"netlink\"\naddress = \"10.255.255.100\"\ninterface = \"nosuch0\"\n".into(),
        ),
        ..Default::default()
    };
    let seed = one_frontend("http", 8080, "round_robin", &[backend.address], "");
    let mut node = Node::create(1, ip, &[(1, ip)], &seed, &options);
    node.launch();
    let code = node.wait_exit(Duration::from_secs(10)).await;
    let log = node.log();
    assert_ne!(code, Some(0), "{log}");
    assert!(
        log.contains("vip.interface: no interface named \"nosuch0\"")
            || log.contains("needs CAP_NET_ADMIN"),
        "{log}"
    );
}
