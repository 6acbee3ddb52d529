//! Failover drills: the VIP under client load while the holder is killed,
//! frozen, restarted with SIGTERM one node at a time, or restarted with
//! the whole cluster.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_kill_the_leader_under_load() {
    let VipCluster {
        _backend,
        mut cluster,
        admins,
        vip: vip_address,
    } = vip_cluster().await;
    // Sample every node's claim for the whole drill.
    let sampler = HolderSampler::start(&admins);
    let stop = Arc::new(AtomicBool::new(false));
    // Steady client load through the VIP, bounded.
    let failed = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let last_ok: Arc<Mutex<Instant>> = Arc::new(Mutex::new(Instant::now()));
    // Answered requests: (sent, answered).
    let oks: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let load = {
        let (stop, failed, sent, oks) = (stop.clone(), failed.clone(), sent.clone(), oks.clone());
        let last_ok = last_ok.clone();
        tokio::spawn(async move {
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                let began = Instant::now();
                if request_once(vip_address).await {
                    let now = Instant::now();
                    *last_ok.lock().expect("last ok") = now;
                    oks.lock().expect("oks").push((began, now));
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let repetitions = 10;
    let mut failovers = Vec::new();
    let mut takeovers: HashMap<u64, usize> = HashMap::new();
    for _ in 0..repetitions {
        // Each kill starts from a settled cluster: the node restarted last
        // has caught up, so this is one failure, not two at once.
        assert!(
            wait_until(Duration::from_secs(10), || settled(&cluster)).await,
            "the cluster did not settle"
        );
        let holder_id = loop {
            let now = holders(&admins);
            if now.len() == 1 {
                break now[0];
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let index = cluster
            .nodes
            .iter()
            .position(|n| n.id == holder_id)
            .expect("holder");
        let killed = Instant::now();
        cluster.nodes[index].kill9();
        // Failover time: from the kill to the answer of the first request
        // sent after it.
        let answered = wait_until(Duration::from_secs(10), || {
            oks.lock()
                .expect("oks")
                .last()
                .is_some_and(|(sent, _)| *sent > killed)
        })
        .await;
        assert!(answered, "the VIP never answered again");
        let first = oks
            .lock()
            .expect("oks")
            .iter()
            .find(|(sent, _)| *sent > killed)
            .map(|(_, answered)| *answered)
            .expect("an answer");
        failovers.push(first - killed);
        let survivors: Vec<(u64, SocketAddr)> = admins
            .iter()
            .filter(|(id, _)| *id != holder_id)
            .copied()
            .collect();
        if let Some(new) = holders(&survivors).first() {
            *takeovers.entry(*new).or_default() += 1;
        }
        cluster.nodes[index].launch();
        cluster.nodes[index].wait_ready().await;
    }
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");
    let (double, samples) = sampler.finish();
    failovers.sort();
    let report = format!(
        "drill kill-9 leader: {repetitions} repetitions, failover p50 {} p99 {} max {}, \
         client requests failed {} of {}, samples with two VIP holders {} of {}",
        ms(percentile(&failovers, 0.5)),
        ms(percentile(&failovers, 0.99)),
        ms(*failovers.last().expect("failovers")),
        failed.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed),
        double,
        samples,
    );
    println!("{report} (takeovers by node: {takeovers:?})");
    assert_eq!(double, 0, "{report}");
    assert!(
        percentile(&failovers, 0.99) < Duration::from_secs(1),
        "{report}"
    );
    // No committed configuration lost.
    for node in &cluster.nodes {
        assert_eq!(node.config_version(), Some(1), "node {}", node.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_freeze_the_leader() {
    let VipCluster {
        _backend,
        cluster,
        admins,
        vip: vip_address,
    } = vip_cluster().await;
    let frozen_id = holders(&admins)[0];
    let frozen = cluster
        .nodes
        .iter()
        .find(|n| n.id == frozen_id)
        .expect("holder");

    let sampler = HolderSampler::start(&admins);
    let frozen_at = Instant::now();
    frozen.signal("STOP");
    // Longer than the election timeout: the others elect a new leader.
    let survivors: Vec<(u64, SocketAddr)> = admins
        .iter()
        .filter(|(id, _)| *id != frozen_id)
        .copied()
        .collect();
    let elected = wait_until(Duration::from_secs(10), || {
        cluster
            .nodes
            .iter()
            .filter(|n| n.id != frozen_id)
            .any(|n| n.try_status().is_some_and(|s| s["role"] == "leader"))
    })
    .await;
    assert!(elected, "no new leader while the old one was frozen");
    tokio::time::sleep(Duration::from_millis(500)).await;
    frozen.signal("CONT");
    let resumed_at = Instant::now();
    assert!(
        answered_within_200_tries(vip_address).await,
        "the VIP never answered after the freeze"
    );
    let back_after = resumed_at.elapsed();
    let holder_now = holders(&admins);
    let (double, samples) = sampler.finish();
    println!(
        "drill freeze leader: frozen {}, VIP answered {} after SIGCONT, holder now {holder_now:?} \
         (survivors {:?}), samples with two VIP holders {} of {}",
        ms(resumed_at - frozen_at),
        ms(back_after),
        survivors.iter().map(|(id, _)| id).collect::<Vec<_>>(),
        double,
        samples
    );
    assert_eq!(double, 0);
    assert_eq!(holder_now.len(), 1);
    assert_ne!(
        holder_now[0], frozen_id,
        "the resumed old leader kept the VIP"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_rolling_restart_with_sigterm() {
    let VipCluster {
        _backend,
        mut cluster,
        admins,
        vip: vip_address,
    } = vip_cluster().await;

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let gaps: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let load = {
        let (stop, failed, sent, gaps) = (stop.clone(), failed.clone(), sent.clone(), gaps.clone());
        let answered = answered.clone();
        tokio::spawn(async move {
            let mut last_ok = Instant::now();
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                if request_with_retry(vip_address, Duration::from_secs(1)).await {
                    let now = Instant::now();
                    if now.duration_since(last_ok) > Duration::from_millis(100) {
                        gaps.lock().expect("gaps").push(now - last_ok);
                    }
                    last_ok = now;
                    answered.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let started = Instant::now();
    let mut handovers = Vec::new();
    for index in 0..cluster.nodes.len() {
        let was_holder = holders(&admins) == vec![cluster.nodes[index].id];
        let terminated = Instant::now();
        cluster.nodes[index].signal("TERM");
        if was_holder {
            // How long until another node holds the VIP.
            let old = cluster.nodes[index].id;
            let others: Vec<(u64, SocketAddr)> = admins
                .iter()
                .filter(|(id, _)| *id != old)
                .copied()
                .collect();
            if wait_until(Duration::from_secs(10), || !holders(&others).is_empty()).await {
                handovers.push(terminated.elapsed());
            }
        }
        let code = cluster.nodes[index]
            .wait_exit(Duration::from_secs(15))
            .await;
        assert_eq!(
            code,
            Some(0),
            "node {} exit status",
            cluster.nodes[index].id
        );
        cluster.nodes[index].launch();
        cluster.nodes[index].wait_ready().await;
        assert!(wait_until(Duration::from_secs(10), || holders(&admins).len() == 1).await);
        // Let the client run through the VIP for a while before the next one.
        let before = answered.load(Ordering::Relaxed);
        assert!(
            wait_until(Duration::from_secs(10), || answered.load(Ordering::Relaxed)
                >= before + 50)
            .await,
            "the client stopped getting answers"
        );
    }
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");
    let gaps = gaps.lock().expect("gaps").clone();
    println!(
        "drill rolling restart (SIGTERM, 3 nodes, {}): client requests failed {} of {} \
         (one retry after 1 s), VIP gaps over 100 ms seen by that client: {}, \
         another node held the VIP after SIGTERM of the holder: {}",
        ms(started.elapsed()),
        failed.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed),
        ms_list(&gaps),
        ms_list(&handovers),
    );
    if failed.load(Ordering::Relaxed) > 0 {
        cluster.dump_logs();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    for node in &cluster.nodes {
        assert_eq!(node.config_version(), Some(1), "node {}", node.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_restart_the_whole_cluster() {
    let VipCluster {
        _backend: backend,
        mut cluster,
        admins,
        vip: vip_address,
    } = vip_cluster().await;
    // A change beyond the seed, so "same configuration" means something.
    let (code, _, err) = ctl_async(
        cluster.endpoints(),
        vec![
            "backend".into(),
            "set-weight".into(),
            "pool".into(),
            backend.address.to_string(),
            "7".into(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        wait_until(Duration::from_secs(5), || cluster
            .nodes
            .iter()
            .all(|n| n.config_version() == Some(2)))
        .await
    );
    let stopped = Instant::now();
    for node in &mut cluster.nodes {
        node.kill9();
    }
    for node in &mut cluster.nodes {
        node.launch();
    }
    for node in &cluster.nodes {
        node.wait_ready().await;
    }
    assert!(
        wait_until(Duration::from_secs(10), || holders(&admins).len() == 1).await,
        "no single VIP holder after the restart"
    );
    // From the first answer on, a client sees every request answered and
    // every node's claim is sampled: exactly one holder.
    let sampler = HolderSampler::start(&admins);
    let first_answer = answered_within_200_tries(vip_address)
        .await
        .then(|| stopped.elapsed());
    let mut failed = 0;
    for _ in 0..50 {
        if !request_once(vip_address).await {
            failed += 1;
        }
    }
    let (double, samples) = sampler.finish();
    println!(
        "drill whole-cluster restart: VIP answering {} after kill -9 of all three, \
         then {failed} of 50 requests failed, holder {:?}, samples with two VIP holders {double} of {samples}",
        ms_or_never(first_answer),
        holders(&admins)
    );
    assert!(
        first_answer.is_some(),
        "the VIP never answered after the restart"
    );
    assert_eq!(failed, 0);
    assert_eq!(double, 0);
    assert_eq!(holders(&admins).len(), 1);
    for node in &cluster.nodes {
        assert_eq!(node.config_version(), Some(2), "node {}", node.id);
        let weight = node.status()["backends"][0]["weight"].as_u64();
        assert_eq!(weight, Some(7), "node {}", node.id);
    }
}
