//! The control plane is exact: every write applied once however it is
//! retried, no version for a write that changes nothing, bad input refused,
//! a watch that resumes on another node without a gap or a repeat.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use raftlb::proto::v1 as pb;
use raftlb::proto::v1::control_service_client::ControlServiceClient;
use tonic::transport::Channel;

use crate::fixture::*;

/// A control API client of `endpoint`, with a per-call deadline.
async fn api(endpoint: &str) -> Result<ControlServiceClient<Channel>, tonic::Status> {
    control_client(endpoint)
        .await
        .map_err(|e| tonic::Status::unavailable(format!("transport error: {e}")))
}

async fn add_backend(
    endpoint: &str,
    address: &str,
    request_id: &str,
) -> Result<pb::ChangeReply, tonic::Status> {
    let request = pb::AddBackendRequest {
        pool: "pool".into(),
        address: address.into(),
        weight: None,
        admin_state: String::new(),
        request_id: request_id.into(),
    };
    Ok(api(endpoint)
        .await?
        .add_backend(request)
        .await?
        .into_inner())
}

async fn set_weight(
    endpoint: &str,
    address: &str,
    weight: u32,
    request_id: &str,
) -> Result<pb::ChangeReply, tonic::Status> {
    let request = pb::SetWeightRequest {
        pool: "pool".into(),
        address: address.into(),
        weight,
        request_id: request_id.into(),
    };
    Ok(api(endpoint).await?.set_weight(request).await?.into_inner())
}

async fn history(endpoint: &str) -> pb::HistoryReply {
    api(endpoint)
        .await
        .expect("connect")
        .history(pb::HistoryRequest {})
        .await
        .expect("history")
        .into_inner()
}

/// The errors after which a write may or may not have been applied: the
/// only ones a client retries (with the same request id).
fn outcome_unknown(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Unknown
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_through_every_node_apply_once_while_leaders_are_killed() {
    const WRITERS: usize = 4;
    const WRITES: usize = 10;
    let ip = unique_ip();
    let a = HttpBackend::start("a", ip).await;
    let seed = one_frontend("http", 8080, "round_robin", &[a.address], "");
    let mut cluster = Cluster::start(3, &seed).await;
    let endpoints: Arc<Vec<String>> = Arc::new(cluster.nodes.iter().map(Node::api).collect());
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (endpoints, acknowledged) = (endpoints.clone(), acknowledged.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                let mut next = w;
                for i in 0..WRITES {
                    let address = format!("127.0.0.1:{}", 30_000 + w * 100 + i);
                    let id = format!("writer{w}-write{i}");
                    let started = Instant::now();
                    loop {
                        assert!(
                            started.elapsed() < Duration::from_secs(60),
                            "{id} never acknowledged"
                        );
                        // Every writer goes through every node in turn.
                        let endpoint = &endpoints[next % endpoints.len()];
                        next += 1;
                        match add_backend(endpoint, &address, &id).await {
                            Ok(reply) => {
                                done.push((address, reply.version, reply.replayed));
                                acknowledged.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            // An ALREADY_EXISTS here would be the bug:
                            // the first attempt applied, its reply lost.
                            Err(status) => assert!(
                                outcome_unknown(&status),
                                "{id} through {endpoint} refused: {status:?}"
                            ),
                        }
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                }
                done
            })
        })
        .collect();

    // Kill the leader twice while the writers run, restarting each victim
    // a little later.
    let total = WRITERS * WRITES;
    let mut victims = Vec::new();
    for kill_at in [total / 5, total / 2] {
        let reached = wait_until(Duration::from_secs(60), || {
            acknowledged.load(Ordering::Relaxed) >= kill_at
        })
        .await;
        assert!(reached, "writes stalled before kill at {kill_at}");
        let leader = cluster.wait_leader(Duration::from_secs(10)).await;
        cluster.nodes[leader].kill9();
        println!(
            "killed the leader, node {}, after {} acknowledged writes",
            cluster.nodes[leader].id,
            acknowledged.load(Ordering::Relaxed)
        );
        victims.push(leader);
        let settle = acknowledged.load(Ordering::Relaxed) + 4;
        wait_until(Duration::from_secs(20), || {
            acknowledged.load(Ordering::Relaxed) >= settle.min(total)
        })
        .await;
        cluster.nodes[leader].launch();
    }
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.expect("writer"));
    }
    assert_eq!(acked.len(), total);
    let replayed = acked.iter().filter(|(_, _, replayed)| *replayed).count();

    // One version per write, and every node at it: a write applied twice
    // would make one more.
    let expected_version = 1 + total as u64;
    for node in &cluster.nodes {
        let reached = wait_until(Duration::from_secs(20), || {
            node.config_version() == Some(expected_version)
        })
        .await;
        if !reached {
            cluster.dump_logs();
        }
        assert!(
            reached,
            "node {} is at version {:?}, not {expected_version}",
            node.id,
            node.config_version()
        );
        let (code, out, err) = ctl(&node.api(), &["get", "backends", "--local", "--json"]);
        assert_eq!(code, 0, "{err}");
        for (address, _, _) in &acked {
            assert_eq!(
                out.matches(&format!("\"{address}\"")).count(),
                1,
                "node {} has backend {address} not exactly once",
                node.id
            );
        }
    }
    // The history, read through each node, names each write once.
    for endpoint in endpoints.iter() {
        let history = history(endpoint).await;
        assert_eq!(history.current_version, expected_version);
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for revision in &history.revisions {
            for (address, _, _) in &acked {
                if revision
                    .command
                    .contains(&format!("add backend {address} "))
                {
                    *seen.entry(address.as_str()).or_default() += 1;
                }
            }
        }
        assert_eq!(seen.len(), total, "history through {endpoint}");
        assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    }
    // Versions acknowledged are distinct: no two writes claim one version.
    let versions: BTreeSet<u64> = acked.iter().map(|(_, v, _)| *v).collect();
    assert_eq!(versions.len(), total);

    // A write sent again with its id after the fact is answered, not
    // applied: same version, nothing new.
    let (address, version, _) = &acked[0];
    let again = add_backend(&endpoints[2], address, "writer0-write0")
        .await
        .expect("retry answered");
    assert!(again.replayed, "{again:?}");
    assert_eq!(again.version, *version);
    assert_eq!(
        history(&endpoints[1]).await.current_version,
        expected_version
    );
    println!(
        "{total} writes from {WRITERS} writers through 3 nodes, 2 leaders killed (nodes {victims:?}): \
         each applied once, {replayed} acknowledged as replays of an earlier attempt"
    );
}

#[tokio::test]
async fn repeats_no_ops_and_bad_input_change_nothing() {
    let ip = unique_ip();
    let a = HttpBackend::start("a", ip).await;
    let node = Node::start(&one_frontend("http", 8080, "round_robin", &[a.address], "")).await;
    let endpoint = node.api();
    let backend = a.address.to_string();
    let start = history(&endpoint).await;

    // The same request id twice: applied once, the second answer is the
    // first result.
    let first = set_weight(&endpoint, &backend, 5, "change-1")
        .await
        .expect("first");
    assert!(!first.replayed && !first.unchanged);
    assert_eq!(first.version, start.current_version + 1);
    let second = set_weight(&endpoint, &backend, 5, "change-1")
        .await
        .expect("repeat");
    assert!(second.replayed, "{second:?}");
    assert_eq!(
        (second.version, &second.changes),
        (first.version, &first.changes)
    );

    // A refused write is remembered as refused, not tried again later.
    let refused = set_weight(&endpoint, "127.0.0.1:1", 5, "change-2")
        .await
        .expect_err("unknown backend");
    assert_eq!(refused.code(), tonic::Code::NotFound);
    let again = set_weight(&endpoint, "127.0.0.1:1", 5, "change-2")
        .await
        .expect_err("still refused");
    assert_eq!(again.code(), tonic::Code::NotFound);

    // Asking for what is already so: no version, no history entry.
    let (code, out, err) = ctl(&endpoint, &["backend", "set-weight", "pool", &backend, "5"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("unchanged"), "{out}");
    assert!(out.contains(&format!("version {}", first.version)), "{out}");
    let (code, out, _) = ctl(&endpoint, &["backend", "enable", "pool", &backend]);
    assert_eq!(code, 0);
    assert!(out.contains("unchanged"), "{out}");
    let after = history(&endpoint).await;
    assert_eq!(after.current_version, first.version);
    assert_eq!(after.revisions.len(), start.revisions.len() + 1);

    // A bad request id is refused and names its field.
    let bad = set_weight(&endpoint, &backend, 6, "has space")
        .await
        .expect_err("bad id");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("request_id"), "{}", bad.message());

    // WaitDrained refuses what does not exist and waits out of bounds.
    let mut client = api(&endpoint).await.expect("api");
    let wait = |pool: &str, address: &str, timeout_ms| pb::WaitDrainedRequest {
        pool: pool.into(),
        address: address.into(),
        timeout_ms,
    };
    for (request, code, names) in [
        (wait("nope", &backend, 1000), tonic::Code::NotFound, "nope"),
        (
            wait("pool", "127.0.0.1:1", 1000),
            tonic::Code::NotFound,
            "127.0.0.1:1",
        ),
        (
            wait("pool", &backend, 0),
            tonic::Code::InvalidArgument,
            "timeout_ms",
        ),
        (
            wait("pool", &backend, 3_600_000),
            tonic::Code::InvalidArgument,
            "timeout_ms",
        ),
    ] {
        let status = client.wait_drained(request).await.expect_err("refused");
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(names), "{}", status.message());
    }
    let drained = client
        .wait_drained(wait("pool", &backend, 1000))
        .await
        .expect("a known backend")
        .into_inner();
    assert!(drained.drained);
    let (code, _, err) = ctl(
        &endpoint,
        &[
            "backend",
            "drain",
            "nope",
            &backend,
            "--wait",
            "--timeout",
            "1",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(history(&endpoint).await.current_version, first.version);
}

/// Reads watch lines until none comes for `quiet`, noting config versions.
fn collect_versions(
    rx: &std::sync::mpsc::Receiver<String>,
    quiet: Duration,
    versions: &mut Vec<u64>,
) {
    while let Ok(line) = rx.recv_timeout(quiet) {
        if let Some(rest) = line.split(" config version ").nth(1) {
            let version: u64 = rest
                .split(':')
                .next()
                .and_then(|v| v.parse().ok())
                .expect("a version");
            versions.push(version);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_on_another_node_without_a_gap_or_a_repeat() {
    let ip = unique_ip();
    let a = HttpBackend::start("a", ip).await;
    let seed = one_frontend("http", 8080, "round_robin", &[a.address], "");
    let mut cluster = Cluster::start(3, &seed).await;
    let mut watch = Command::new(env!("CARGO_BIN_EXE_raftlb"))
        .args(["ctl", "--endpoint", &cluster.endpoints(), "watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctl watch");
    let stdout = watch.stdout.take().expect("stdout");
    let stderr = watch.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let errors = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let others = format!("{},{}", cluster.nodes[1].api(), cluster.nodes[2].api());
    let mut port = 2000;
    let change = |port: &mut u16| {
        *port += 1;
        let args = vec![
            "backend".to_string(),
            "add".into(),
            "pool".into(),
            format!("127.0.0.1:{port}"),
        ];
        ctl_async(others.clone(), args)
    };
    let mut versions = Vec::new();
    // Until node 1's watch has printed a change (the stream opens a little
    // after the process starts).
    for _ in 0..20 {
        let (code, _, err) = change(&mut port).await;
        assert_eq!(code, 0, "{err}");
        collect_versions(&rx, Duration::from_millis(300), &mut versions);
        if !versions.is_empty() {
            break;
        }
    }
    assert!(!versions.is_empty(), "watch printed nothing");
    // The watch is on node 1 (the first endpoint): kill it, change more.
    cluster.nodes[0].kill9();
    for _ in 0..5 {
        let (code, _, err) = change(&mut port).await;
        assert_eq!(code, 0, "{err}");
    }
    // The last version acknowledged (a linearizable read: a node's served
    // version may still lag behind an acknowledgement).
    let last = history(&cluster.nodes[1].api()).await.current_version;
    let deadline = Instant::now() + Duration::from_secs(15);
    while versions.last() != Some(&last) && Instant::now() < deadline {
        collect_versions(&rx, Duration::from_millis(200), &mut versions);
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let errors = errors.join().expect("stderr");
    assert!(
        errors.iter().any(|l| l.contains("resuming after version")),
        "{errors:?}"
    );
    assert_eq!(versions.last(), Some(&last), "{versions:?} {errors:?}");
    let expected: Vec<u64> = (versions[0]..=last).collect();
    assert_eq!(versions, expected, "a gap or a repeat; {errors:?}");
    println!("watch printed versions {versions:?} across a node kill");

    // A version the history no longer holds is refused, naming the oldest
    // kept (50 versions are kept; make more).
    for _ in 0..50 {
        let (code, _, err) = change(&mut port).await;
        assert_eq!(code, 0, "{err}");
    }
    let (code, _, err) = ctl(&others, &["watch", "--from-version", "1"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("compacted") && err.contains("keeps changes from version"),
        "{err}"
    );
}
