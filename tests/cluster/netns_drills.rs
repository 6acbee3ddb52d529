//! Failover drills in network namespaces with a real `netlink` VIP (root
//! only; each prints a skip line otherwise): partition and heal, one ARP
//! answer on the wire, a SIGTERM hand-over without a failed request, and
//! kill, freeze, partition and link cut five times each.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fixture::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_partition_the_leader_in_network_namespaces() {
    let Some(cluster) = NetnsCluster::for_drill('p', "partition").await else {
        return;
    };
    let vip = cluster.vip;
    let (net, node_ns, client_ns) = (&cluster.net, &cluster.node_ns, &cluster.client_ns);
    let nodes = &cluster.nodes;
    let holders = {
        let node_ns = node_ns.clone();
        move || holders_of(&node_ns, vip)
    };
    let old = single_holder(node_ns, vip).await;

    // Client load from its own namespace, and a sampler of every
    // namespace's addresses, both bounded.
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    let client = {
        let (stop, answers) = (stop.clone(), answers.clone());
        let target = SocketAddr::new(IpAddr::V4(vip), 8080);
        in_netns(client_ns, move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let sent = Instant::now();
                let ok = get_blocking(target);
                answers.lock().expect("answers").push((sent, ok));
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let double = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, double, samples, holders) = (
            stop.clone(),
            double.clone(),
            samples.clone(),
            holders.clone(),
        );
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let now = holders();
                if now.len() > 1 {
                    eprintln!("two namespaces hold the VIP: {now:?}");
                    double.fetch_add(1, Ordering::Relaxed);
                }
                samples.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let answered_since = |since: Instant| {
        answers
            .lock()
            .expect("answers")
            .iter()
            .find(|(sent, ok)| *sent > since && *ok)
            .map(|(sent, _)| *sent - since)
    };
    assert!(
        wait_until(Duration::from_secs(5), || answered_since(
            Instant::now() - Duration::from_secs(5)
        )
        .is_some())
        .await,
        "the client never got an answer through the VIP"
    );

    // Cut the holder off.
    let veth = net.veth(old);
    Netns::run(&["link", "set", &veth, "down"]);
    let cut = Instant::now();
    let released = wait_until(Duration::from_secs(5), || {
        !Netns::has_address(&node_ns[old], vip)
    })
    .await
    .then(|| cut.elapsed());
    let taken = wait_until(Duration::from_secs(10), || {
        holders().iter().any(|i| *i != old)
    })
    .await
    .then(|| cut.elapsed());
    let new = holders().into_iter().find(|i| *i != old);
    assert!(
        wait_until(Duration::from_secs(10), || answered_since(cut).is_some()).await,
        "the client was not answered while the old leader was cut off"
    );
    let back_during = answered_since(cut);

    // Heal: the new holder keeps the VIP, the client is answered at once.
    Netns::run(&["link", "set", &veth, "up"]);
    let healed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || answered_since(healed).is_some()).await,
        "the client was not answered after the partition healed"
    );
    let back_after_heal = answered_since(healed);
    // Watch for a while after the heal: requests keep being answered.
    let watch_from = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || {
            answers
                .lock()
                .expect("answers")
                .iter()
                .filter(|(sent, _)| *sent > watch_from)
                .count()
                >= 50
        })
        .await
    );
    stop.store(true, Ordering::Relaxed);
    client.join().expect("client");
    sampler.join().expect("sampler");
    let failed_after_heal = answers
        .lock()
        .expect("answers")
        .iter()
        .filter(|(sent, ok)| *sent > watch_from && !ok)
        .count();
    let final_holders = holders();
    let report = format!(
        "drill netns partition: holder node {} cut off; it released the VIP after {}, \
         node {} took it after {}, the client was answered again {} after the cut; \
         after healing: answered {} after the heal, {failed_after_heal} of the next \
         50+ requests failed, holder now node {:?}; samples with two namespaces holding the VIP \
         {} of {}",
        old + 1,
        ms_or_never(released),
        new.map_or("none".to_string(), |i| (i + 1).to_string()),
        ms_or_never(taken),
        ms_or_never(back_during),
        ms_or_never(back_after_heal),
        final_holders.iter().map(|i| i + 1).collect::<Vec<_>>(),
        double.load(Ordering::Relaxed),
        samples.load(Ordering::Relaxed),
    );
    println!("{report}");
    if std::env::var("DUMP").is_ok() {
        for node in nodes.iter() {
            node.dump_log();
        }
    }
    assert!(
        released.is_some_and(|d| d < Duration::from_secs(1)),
        "{report}"
    );
    assert!(taken.is_some(), "{report}");
    assert_eq!(double.load(Ordering::Relaxed), 0, "{report}");
    assert_eq!(final_holders.len(), 1, "{report}");
    assert_ne!(
        final_holders[0], old,
        "the partitioned node took the VIP back: {report}"
    );
    assert!(
        back_after_heal.is_some_and(|d| d < Duration::from_secs(1)),
        "{report}"
    );
    assert_eq!(failed_after_heal, 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_one_arp_answer_while_the_holder_is_frozen_or_killed() {
    let Some(mut cluster) = NetnsCluster::for_drill('a', "ARP").await else {
        return;
    };
    let (vip, client) = (cluster.vip, cluster.client);
    let (node_ns, macs, client_ns) = (&cluster.node_ns, &cluster.macs, &cluster.client_ns);
    let nodes = &mut cluster.nodes;
    let holders = || holders_of(node_ns, vip);
    single_holder(node_ns, vip).await;
    // Who answers a broadcast who-has, every 50 ms for `window`: per
    // sample, the indices of the nodes whose MAC answered.
    let sample = |window: Duration| {
        watch_arp(
            client_ns,
            client,
            vip,
            Arc::new(AtomicBool::new(false)),
            window,
        )
    };
    let answerers = |watch: ArpWatch| -> Vec<Vec<usize>> {
        watch
            .samples
            .into_iter()
            .map(|(_, answered)| {
                answered
                    .iter()
                    .filter_map(|mac| macs.iter().position(|m| m == mac))
                    .collect()
            })
            .collect()
    };
    let before = answerers(sample(Duration::from_millis(300)).join().expect("sampler"));
    let old = holders()[0];
    assert!(
        before.iter().all(|s| *s == vec![old]),
        "before any failure only the holder, node {}, answers: {before:?}",
        old + 1
    );

    let mut report = Vec::new();
    for (round, how) in ["SIGSTOP", "kill -9"].into_iter().enumerate() {
        let holder = holders()[0];
        let sampler = sample(Duration::from_millis(2_500));
        match how {
            "SIGSTOP" => nodes[holder].signal("STOP"),
            _ => nodes[holder].kill9(),
        }
        let samples = answerers(sampler.join().expect("sampler"));
        if how == "SIGSTOP" {
            nodes[holder].signal("CONT");
        } else {
            nodes[holder].launch();
        }
        // After the failure window the resumed or restarted node must not
        // answer either.
        let after = answerers(sample(Duration::from_millis(800)).join().expect("sampler"));
        let two = samples.iter().chain(&after).filter(|s| s.len() > 1).count();
        let old_answered_after = after.iter().filter(|s| s.contains(&holder)).count();
        let silent = samples.iter().filter(|s| s.is_empty()).count();
        let new_holder = samples.last().and_then(|s| s.first()).copied();
        report.push(format!(
            "{how} of node {}: {} samples, {two} with two answerers, {silent} with none (the gap), \
             then node {} answers; the old holder answered in {old_answered_after} of {} samples after",
            holder + 1,
            samples.len() + after.len(),
            new_holder.map_or("none".to_string(), |i| (i + 1).to_string()),
            after.len()
        ));
        assert_eq!(two, 0, "round {round}: {report:?} {samples:?} {after:?}");
        assert_eq!(old_answered_after, 0, "round {round}: {report:?} {after:?}");
        assert!(
            new_holder.is_some_and(|n| n != holder),
            "round {round}: nobody took over: {report:?} {samples:?}"
        );
        assert!(
            wait_until(Duration::from_secs(15), || holders().len() == 1).await,
            "no single holder after round {round}"
        );
    }
    println!("drill netns ARP: {}", report.join("; "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_sigterm_hands_the_vip_over_without_a_failed_request() {
    let Some(mut cluster) = NetnsCluster::for_drill('b', "SIGTERM hand-over").await else {
        return;
    };
    let vip = cluster.vip;
    let (node_ns, client_ns) = (&cluster.node_ns, &cluster.client_ns);
    let nodes = &mut cluster.nodes;
    let holders = || holders_of(node_ns, vip);
    let target = SocketAddr::new(IpAddr::V4(vip), 8080);
    let mut report = Vec::new();
    for round in 0..5 {
        assert!(
            wait_until(Duration::from_secs(15), || holders().len() == 1).await,
            "round {round}: no single VIP holder"
        );
        let old = holders()[0];
        // A client that never retries: one GET per new connection, every
        // 20 ms, each failure counted.
        let stop = Arc::new(AtomicBool::new(false));
        let client = {
            let stop = stop.clone();
            in_netns(client_ns, move || {
                let (mut sent, mut failed) = (0, Vec::new());
                let deadline = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    sent += 1;
                    let at = Instant::now();
                    if !get_blocking(target) {
                        failed.push(at);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                (sent, failed)
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let termed = Instant::now();
        nodes[old].signal("TERM");
        let exited = nodes[old].wait_exit(Duration::from_secs(15)).await;
        let taken = wait_until(Duration::from_secs(10), || {
            let now = holders();
            now.len() == 1 && now[0] != old
        })
        .await;
        // A little more traffic on the new holder, then stop the client.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        let (sent, failed_at) = client.join().expect("client");
        let failed = failed_at.len();
        let when: Vec<_> = failed_at
            .iter()
            .map(|at| at.saturating_duration_since(termed))
            .collect();
        report.push(format!(
            "round {round}: node {} stopped, {failed} of {sent} failed (sent {} after SIGTERM)",
            old + 1,
            ms_list(&when)
        ));
        assert_eq!(exited, Some(0), "round {round}: {report:?}");
        assert!(taken, "round {round}: nobody took the VIP over: {report:?}");
        // A non-retrying client loses nothing: the successor holds and
        // announces the VIP before the old holder stops answering ARP
        // and lingers past the neighbours' locktime (releasing first, as
        // before, failed at least one request in every round).
        assert_eq!(failed, 0, "round {round}: {report:?}");
        nodes[old].launch();
        nodes[old].wait_ready().await;
    }
    println!(
        "drill netns SIGTERM hand-over (netlink, non-retrying client every 20 ms): {}",
        report.join("; ")
    );
}

/// How a drill round breaks the holder.
#[derive(Clone, Copy, Debug)]
enum Failure {
    Kill,
    Freeze,
    Partition,
    LinkCut,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_kill_freeze_partition_and_cut_the_holder_in_network_namespaces() {
    let Some(mut cluster) = NetnsCluster::for_drill('d', "failures").await else {
        return;
    };
    let (vip, client) = (cluster.vip, cluster.client);
    let (net, node_ns, macs, client_ns) = (
        &cluster.net,
        &cluster.node_ns,
        &cluster.macs,
        &cluster.client_ns,
    );
    let nodes = &mut cluster.nodes;
    let holders = || holders_of(node_ns, vip);
    let target = SocketAddr::new(IpAddr::V4(vip), 8080);
    let mut lines = Vec::new();
    for failure in [
        Failure::Kill,
        Failure::Freeze,
        Failure::Partition,
        Failure::LinkCut,
    ] {
        let mut gaps = Vec::new();
        for round in 0..5 {
            assert!(
                wait_until(Duration::from_secs(15), || holders().len() == 1).await,
                "{failure:?} round {round}: no single VIP holder"
            );
            let old = holders()[0];
            let stop = Arc::new(AtomicBool::new(false));
            let arp = watch_arp(
                client_ns,
                client,
                vip,
                stop.clone(),
                Duration::from_secs(60),
            );
            let probes = {
                let stop = stop.clone();
                // Open loop, like a crowd of users: a probe every 20 ms
                // on its own thread (which stays in the client's
                // namespace), so one stuck on the frozen holder for its
                // 500 ms timeout does not hold back the next ones.
                in_netns(client_ns, move || {
                    let mut probes = Vec::new();
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let sent = Instant::now();
                        probes.push((sent, std::thread::spawn(move || get_blocking(target))));
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    probes
                        .into_iter()
                        .map(|(sent, probe)| (sent, probe.join().unwrap_or(false)))
                        .collect::<Vec<_>>()
                })
            };
            tokio::time::sleep(Duration::from_millis(200)).await;
            let veth = net.veth(old);
            let began = Instant::now();
            match failure {
                Failure::Kill => nodes[old].kill9(),
                Failure::Freeze => nodes[old].signal("STOP"),
                Failure::Partition => {
                    // Carrier up, nothing in or out: the node's veth stays
                    // up but is taken off the bridge.
                    Netns::run(&["link", "set", &veth, "nomaster"]);
                }
                Failure::LinkCut => Netns::run(&["link", "set", &veth, "down"]),
            }
            // A frame the kernel took before the failure took effect was
            // sent by a live holder; the signal's delivery to every
            // thread lags its sending by a little.
            let took = began.elapsed();
            let failed = Instant::now() + Duration::from_millis(10);
            let outage = match failure {
                Failure::Freeze => Duration::from_secs(5),
                _ => Duration::from_secs(2),
            };
            tokio::time::sleep(outage).await;
            match failure {
                Failure::Kill => nodes[old].launch(),
                Failure::Freeze => nodes[old].signal("CONT"),
                Failure::Partition => {
                    Netns::run(&["link", "set", &veth, "master", &net.bridge]);
                }
                Failure::LinkCut => Netns::run(&["link", "set", &veth, "up"]),
            }
            let healed = Instant::now();
            if matches!(failure, Failure::Kill) {
                nodes[old].wait_ready().await;
            }
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            stop.store(true, Ordering::Relaxed);
            let probes = probes.join().expect("probes");
            let arp = arp.join().expect("arp watch");
            // The client's gap: the longest time between two answered
            // probes (by when they were sent) over the whole round. Not
            // "from the command to the first answer": the command takes
            // effect some time after it starts (`ip link set down` can
            // take longer than the probes' period), and probes answered
            // meanwhile would hide the outage.
            let answered: Vec<Instant> = probes
                .iter()
                .filter(|(_, ok)| *ok)
                .map(|(sent, _)| *sent)
                .collect();
            let gap = answered
                .last()
                .filter(|last| **last > failed)
                .and_then(|_| answered.windows(2).map(|w| w[1] - w[0]).max());
            let failed_after_heal: Vec<u128> = probes
                .iter()
                .filter(|(sent, ok)| *sent > healed && !ok)
                .map(|(sent, _)| (*sent - healed).as_millis())
                .collect();
            let failed_after = failed_after_heal.len();
            let two = arp.samples.iter().filter(|(_, s)| s.len() > 1).count();
            let old_mac = macs[old];
            // From the failure on, the old holder announces nothing: not
            // while it is failed (killed, frozen, cut off), and not once
            // resumed or reconnected unless it rightly won the VIP back.
            let holding = holders();
            let won_back = holding == vec![old];
            // Nor does a node that held the VIP at no point: the only
            // other sender allowed is the node that holds it now.
            let bystanders: Vec<[u8; 6]> = (0..macs.len())
                .filter(|i| *i != old && !holding.contains(i))
                .map(|i| macs[i])
                .collect();
            let bystanders_announced = arp
                .announcements
                .iter()
                .filter(|(_, from)| bystanders.contains(from))
                .count();
            let old_announced = arp
                .announcements
                .iter()
                .filter(|(at, from)| {
                    *at > failed && (*at < healed || !won_back) && *from == old_mac
                })
                .count();
            let old_answered_after_heal = arp
                .samples
                .iter()
                .filter(|(at, s)| *at > healed && s.contains(&old_mac))
                .count();
            let context = format!(
                "{failure:?} round {round} of node {} (the command took {took:?}): gap {gap:?}, {failed_after} failed after the heal, \
                 {two} of {} ARP samples with two answerers, {old_announced} gratuitous ARPs from the old \
                 holder since it failed (won back: {won_back}), {bystanders_announced} from nodes that never held it, \
                 it answered {old_answered_after_heal} who-has after the heal",
                old + 1,
                arp.samples.len()
            );
            let gap_too_long = gap.is_none_or(|gap| gap >= Duration::from_secs(4));
            if two + old_announced + bystanders_announced + failed_after > 0 || gap_too_long {
                eprintln!("probes failed after the heal, ms after it: {failed_after_heal:?}");
                for node in nodes.iter() {
                    node.dump_log();
                }
            }
            assert_eq!(two, 0, "{context}");
            assert_eq!(old_announced, 0, "{context}");
            assert_eq!(bystanders_announced, 0, "{context}");
            if !won_back {
                assert_eq!(old_answered_after_heal, 0, "{context}");
            }
            assert_eq!(failed_after, 0, "{context}");
            let gap = gap.unwrap_or_else(|| panic!("never answered again: {context}"));
            // The gap is a figure to print, not a timed assertion (the goal,
            // p99 under 500 ms, is met in the runs the README quotes); this
            // bound only says the failover happened.
            assert!(gap < Duration::from_secs(4), "{context}");
            gaps.push(gap);
        }
        gaps.sort();
        lines.push(format!(
            "{failure:?}: gap p50 {} max {}",
            ms(gaps[gaps.len() / 2]),
            ms(gaps[gaps.len() - 1])
        ));
    }
    println!(
        "drill netns failures (5 each, client every 20 ms, who-has every 50 ms): {}; \
         never two ARP answerers, no gratuitous ARP from a failed holder, no failed request after a heal",
        lines.join("; ")
    );
}
