//! Leadership transfer (`ctl cluster transfer-leader`): the VIP moves with
//! it, to the node asked, and a cancelled transfer gives everything back.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_leader_moves_the_vip_and_status_names_the_holder() {
    let VipCluster {
        _backend,
        cluster,
        admins,
        vip: vip_address,
    } = vip_cluster().await;
    let old = holders(&admins)[0];
    let (code, out, err) = ctl_async(cluster.endpoints(), vec!["status".into()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("VIP {}: held by node {old}", vip_address.ip())),
        "{out}"
    );
    let target = admins
        .iter()
        .map(|(id, _)| *id)
        .find(|id| *id != old)
        .expect("a follower");
    let (code, out, err) = transfer_leader(&cluster, target).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "leadership moved from node {old} to node {target}"
        )),
        "{out}"
    );
    println!("transfer-leader: {}", out.trim());
    assert!(
        wait_until(Duration::from_secs(5), || holders(&admins) == vec![target]).await,
        "the VIP did not follow the leadership to node {target}"
    );
    assert!(request_once(vip_address).await, "the VIP does not answer");
    // The role is in the metrics too.
    let node = |id: u64| cluster.nodes.iter().find(|n| n.id == id).expect("node");
    assert_eq!(node(old).metric("raftlb_vip_held"), Some(0.0));
    assert!(node(old).metric("raftlb_vip_last_release_timestamp_ms") > Some(0.0));
    assert_eq!(node(target).metric("raftlb_vip_held"), Some(1.0));
    assert!(node(target).metric("raftlb_vip_last_acquire_timestamp_ms") > Some(0.0));
    assert!(
        wait_until(Duration::from_secs(2), || node(target)
            .metric("raftlb_vip_fence_margin_ms")
            .is_some_and(|m| m > 0.0))
        .await
    );
    // The old leader heartbeats again: the cluster stays with the new one.
    assert!(
        wait_until(Duration::from_secs(5), || settled(&cluster)).await,
        "the cluster did not settle"
    );
    let leader = cluster.nodes[0].status()["leader"].as_u64();
    assert_eq!(leader, Some(target));
    // Unknown target: refused, nothing moves.
    let (code, _, err) = ctl_async(
        cluster.endpoints(),
        vec!["cluster".into(), "transfer-leader".into(), "99".into()],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a voter"), "{err}");
    assert_eq!(holders(&admins), vec![target]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_leader_goes_where_it_was_asked_20_times_in_20() {
    let VipCluster {
        _backend,
        cluster,
        admins,
        vip: _,
    } = vip_cluster().await;
    let mut leader = holders(&admins)[0];
    for attempt in 0..20 {
        // Alternate between the two followers.
        let followers: Vec<u64> = admins
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| *id != leader)
            .collect();
        let target = followers[attempt % followers.len()];
        let (code, out, err) = transfer_leader(&cluster, target).await;
        assert_eq!(code, 0, "try {attempt}: {out}{err}");
        assert!(
            out.contains(&format!("to node {target}")),
            "try {attempt}: {out}"
        );
        assert!(
            wait_until(Duration::from_secs(5), || holders(&admins) == vec![target]).await,
            "try {attempt}: the VIP did not follow to node {target}: {:?}",
            holders(&admins)
        );
        leader = target;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_transfer_gives_the_leader_back_its_heartbeats_and_vip() {
    let VipCluster {
        _backend,
        cluster,
        admins,
        vip: vip_address,
    } = vip_cluster().await;
    let old = holders(&admins)[0];
    let leader = cluster.nodes.iter().find(|n| n.id == old).expect("leader");
    let target = admins
        .iter()
        .map(|(id, _)| *id)
        .find(|id| *id != old)
        .expect("a follower");
    // Ask the leader itself, and go away while it waits out the vote lease
    // with its heartbeats off and its VIP paused (the transfer's longest
    // step): the caller's reset drops the server's transfer future there.
    let mut client = control_client(&leader.api()).await.expect("connect");
    let call = client.transfer_leader(raftlb::proto::v1::TransferLeaderRequest {
        target: Some(target),
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(60), call)
            .await
            .is_err(),
        "the transfer finished before it could be cancelled"
    );
    drop(client);
    // Whoever leads now must hold the VIP; if the leadership stayed, the
    // old leader must have its heartbeats and VIP back.
    assert!(
        wait_until(Duration::from_secs(5), || {
            settled(&cluster) && holders(&admins).len() == 1
        })
        .await,
        "no single VIP holder after the cancelled transfer: {:?}",
        holders(&admins)
    );
    let now = cluster.nodes[0].status()["leader"]
        .as_u64()
        .expect("leader");
    if now != old {
        // Leadership moved anyway: bring it back; the old leader must be
        // able to take the VIP again.
        let (code, out, err) = transfer_leader(&cluster, old).await;
        assert_eq!(code, 0, "{out}{err}");
    }
    assert!(
        wait_until(Duration::from_secs(5), || holders(&admins) == vec![old]).await,
        "node {old} does not hold the VIP again after a cancelled transfer: holders {:?}",
        holders(&admins)
    );
    assert!(request_once(vip_address).await, "the VIP does not answer");
}
