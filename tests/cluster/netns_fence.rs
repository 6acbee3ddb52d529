//! The fence on the wire, in network namespaces (root only; a skip line
//! otherwise): a holder frozen while it still has announcements to send
//! sends none of them once resumed, because its lease ran out meanwhile;
//! and a peer back from a long partition is reached again at once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::fixture::*;

/// The holder's log line when a peer answers again and it re-announces:
/// five frames over the next second (the default `garp_repeats`).
const REANNOUNCE: &str = "a peer answers again: announcing the VIP again";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_a_holder_frozen_while_announcing_sends_nothing_once_resumed() {
    let Some(cluster) = NetnsCluster::for_drill('f', "frozen while announcing").await else {
        return;
    };
    let (vip, client) = (cluster.vip, cluster.client);
    let (net, node_ns, macs, client_ns) = (
        &cluster.net,
        &cluster.node_ns,
        &cluster.macs,
        &cluster.client_ns,
    );
    let nodes = &cluster.nodes;
    let holders = || holders_of(node_ns, vip);
    let old = single_holder(node_ns, vip).await;
    let peer = (old + 1) % 3;
    let reannounced = || nodes[old].log().matches(REANNOUNCE).count();

    // A follower drops off the bridge until the holder counts it
    // unreachable, then comes back: the holder starts re-announcing.
    let veth = net.veth(peer);
    Netns::run(&["link", "set", &veth, "nomaster"]);
    let unreachable = format!("peer unreachable peer={}", peer + 1);
    assert!(
        wait_until(Duration::from_secs(15), || nodes[old]
            .log()
            .contains(&unreachable))
        .await,
        "node {} never counted node {} unreachable",
        old + 1,
        peer + 1
    );
    // Long enough for the holder's old connection to the peer to be deep
    // in TCP's retransmission back-off (its next retry would come seconds
    // after the heal): only a fresh connection finds the peer at once.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let before = reannounced();
    let stop = Arc::new(AtomicBool::new(false));
    let arp = watch_arp(
        client_ns,
        client,
        vip,
        stop.clone(),
        Duration::from_secs(30),
    );
    Netns::run(&["link", "set", &veth, "master", &net.bridge]);
    let healed = Instant::now();
    // Freeze the holder as soon as it says it re-announces: the rest of
    // the frames are still due.
    let seen = wait_until(Duration::from_secs(15), || reannounced() > before).await;
    assert!(seen, "node {} never re-announced the VIP", old + 1);
    let peer_back_after = healed.elapsed();
    nodes[old].signal("STOP");
    let frozen = Instant::now() + Duration::from_millis(10);

    // Another node takes over while it is frozen.
    let taken = wait_until(Duration::from_secs(10), || {
        holders().iter().any(|i| *i != old)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    nodes[old].signal("CONT");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, Ordering::Relaxed);
    let arp = arp.join().expect("arp watch");
    let from_old: Vec<Instant> = arp
        .announcements
        .iter()
        .filter(|(_, from)| *from == macs[old])
        .map(|(at, _)| *at)
        .collect();
    let before_freeze = from_old.iter().filter(|at| **at <= frozen).count();
    let after_freeze = from_old.len() - before_freeze;
    // When each came, counted from the freeze (0 for those before it).
    let from_old: Vec<Duration> = from_old
        .iter()
        .map(|at| at.saturating_duration_since(frozen))
        .collect();
    println!(
        "drill netns frozen while announcing: node {} answered again {} after its 8 s partition healed; \
         node {} sent {before_freeze} gratuitous ARPs before the freeze, \
         {after_freeze} after (it had {} due); node {} holds the VIP",
        peer + 1,
        ms(peer_back_after),
        old + 1,
        5usize.saturating_sub(before_freeze),
        holders()
            .first()
            .map_or("none".to_string(), |i| (i + 1).to_string())
    );
    // Back at once, not when the old connection's back-off ends (seconds
    // later; asserted with room for a loaded machine).
    assert!(
        peer_back_after < Duration::from_secs(3),
        "node {} took {peer_back_after:?} to reach node {} again after the heal",
        old + 1,
        peer + 1
    );
    assert!(taken, "nobody took the VIP over from the frozen holder");
    assert!(
        holders() != vec![old],
        "the resumed node holds the VIP again, so this run proves nothing"
    );
    // Frozen in the middle of its announcements: some were still due.
    assert!(
        before_freeze < 5,
        "the freeze did not land inside the announcements: {from_old:?}"
    );
    assert_eq!(
        after_freeze, 0,
        "the resumed node announced a VIP it no longer holds: {from_old:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_an_ipv6_vip_is_answered_and_announced_by_its_holder_only() {
    let Some(mut cluster) = NetnsCluster::for_drill_ipv6('6', "IPv6 VIP").await else {
        return;
    };
    let (node_ns, macs, client_ns) = (&cluster.node_ns, &cluster.macs, &cluster.client_ns);
    let nodes = &mut cluster.nodes;
    let vip = IpAddr::V6(ipv6_of(cluster.vip));
    let holders = || holders_of(node_ns, vip);
    let target = SocketAddr::new(vip, 8080);
    let reached = |within: Duration| {
        in_netns(client_ns, move || {
            let deadline = Instant::now() + within;
            loop {
                let sent = Instant::now();
                if get_blocking(target) {
                    return Some(sent);
                }
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let old = single_holder(node_ns, vip).await;
    // The kernel does not answer solicitations for an address on lo: the
    // client resolves the VIP only because the holder's process answers.
    assert!(
        reached(Duration::from_secs(10))
            .join()
            .expect("probe")
            .is_some(),
        "the client never reached [{vip}]:8080"
    );
    assert_eq!(
        neighbour_mac(client_ns, vip),
        Some(macs[old]),
        "the client resolved the VIP to another MAC than the holder's (node {})",
        old + 1
    );

    // Kill the holder: the client's entry is fresh (reachable for 15-45 s),
    // so only an unsolicited advertisement from the new holder moves it.
    nodes[old].kill9();
    let killed = Instant::now();
    let back = reached(Duration::from_secs(10)).join().expect("probe");
    let new = holders().into_iter().find(|i| *i != old);
    let moved_to = neighbour_mac(client_ns, vip);
    nodes[old].launch();
    nodes[old].wait_ready().await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let after_restart = neighbour_mac(client_ns, vip);
    let still_reached = reached(Duration::from_secs(5)).join().expect("probe");
    println!(
        "drill netns IPv6 VIP: kill -9 of node {}: the client was answered again {} later, through node {}",
        old + 1,
        ms_or_never(back.map(|at| at - killed)),
        new.map_or("none".to_string(), |i| (i + 1).to_string())
    );
    let new = new.expect("nobody took the IPv6 VIP over");
    assert!(
        back.is_some_and(|at| at - killed < Duration::from_secs(4)),
        "the client was not answered within 4 s of the kill: {:?}",
        back.map(|at| at - killed)
    );
    assert_eq!(
        moved_to,
        Some(macs[new]),
        "the client's entry did not move to the new holder"
    );
    assert_eq!(
        after_restart,
        Some(macs[new]),
        "the restarted old holder took the client's entry back"
    );
    assert!(
        still_reached.is_some(),
        "the client lost the VIP after the restart"
    );
}
