//! The fence on the wire, in network namespaces (root only; a skip line
//! otherwise): a holder frozen while it still has announcements to send
//! sends none of them once resumed, because its lease ran out meanwhile;
//! and a peer back from a long partition is reached again at once.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::fixture::*;

/// The holder's log line when a peer answers again and it re-announces:
/// five frames over the next second (the default `garp_repeats`).
const REANNOUNCE: &str = "a peer answers again: announcing the VIP again";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_a_holder_frozen_while_announcing_sends_nothing_once_resumed() {
    let Some((
        NetnsCluster {
            net,
            nodes,
            backend: _backend,
            vip,
            client_ns,
        },
        node_ns,
    )) = NetnsCluster::for_drill('f', "frozen while announcing").await
    else {
        return;
    };
    let macs: Vec<[u8; 6]> = node_ns.iter().map(|n| mac_of(n)).collect();
    let client = (mac_of(&client_ns), {
        let [a, b, c, _] = vip.octets();
        Ipv4Addr::new(a, b, c, 50)
    });
    let holders = || holders_of(&node_ns, vip);
    assert!(
        wait_until(Duration::from_secs(15), || holders().len() == 1).await,
        "no single VIP holder"
    );
    let old = holders()[0];
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
        &client_ns,
        client,
        vip,
        stop.clone(),
        Duration::from_secs(30),
    );
    Netns::run(&["link", "set", &veth, "master", &net.bridge]);
    let healed = Instant::now();
    // Freeze the holder as soon as it says it re-announces: the rest of
    // the frames are still due.
    let mut seen = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !seen && Instant::now() < deadline {
        seen = reannounced() > before;
        if !seen {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
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
    let from_old: Vec<Duration> = arp
        .announcements
        .iter()
        .filter(|(_, from)| *from == macs[old])
        .map(|(at, _)| at.saturating_duration_since(frozen))
        .collect();
    let before_freeze = arp
        .announcements
        .iter()
        .filter(|(at, from)| *from == macs[old] && *at <= frozen)
        .count();
    let after_freeze = arp
        .announcements
        .iter()
        .filter(|(at, from)| *from == macs[old] && *at > frozen)
        .count();
    println!(
        "drill netns frozen while announcing: node {} answered again {peer_back_after:?} after its 8 s partition healed; \
         node {} sent {before_freeze} gratuitous ARPs before the freeze, \
         {after_freeze} after (it had {} due); node {:?} holds the VIP",
        peer + 1,
        old + 1,
        5usize.saturating_sub(before_freeze),
        holders().first().map(|i| i + 1)
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
    drop(nodes);
    drop(net);
}
