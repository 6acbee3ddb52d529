//! The control API and `raftlb ctl` against three real nodes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::StatusCode;

use crate::fixture::*;

fn write_file(dir: &std::path::Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write file");
    path.display().to_string()
}

/// Waits until every node's answers over `n` requests are exactly `want`.
async fn wait_answers(cluster: &Cluster, n: usize, want: &[(&str, usize)]) {
    let want: HashMap<String, usize> = want.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    for node in &cluster.nodes {
        let mut last = HashMap::new();
        for _ in 0..100 {
            last = answers(node, n).await;
            if last == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(last, want, "node {} answers", node.id);
    }
}

#[tokio::test]
async fn every_backend_verb_shows_in_the_forwarding_of_every_node() {
    let ip = unique_ip();
    let a = HttpBackend::start("a", ip).await;
    let b = HttpBackend::start("b", ip).await;
    let seed = one_frontend("http", 8080, "weighted_round_robin", &[a.address], "");
    let cluster = Cluster::start(3, &seed).await;
    let eps = cluster.endpoints();
    let (a_addr, b_addr) = (a.address.to_string(), b.address.to_string());

    let (code, out, err) = ctl(&eps, &["backend", "add", "pool", &b_addr, "--weight", "3"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("+ backend pool/{b_addr}")), "{out}");
    wait_answers(&cluster, 8, &[("a", 2), ("b", 6)]).await;

    let (code, out, _) = ctl(&eps, &["backend", "set-weight", "pool", &b_addr, "1"]);
    assert_eq!(code, 0);
    assert!(out.contains("weight: 3 -> 1"), "{out}");
    wait_answers(&cluster, 8, &[("a", 4), ("b", 4)]).await;

    let (code, out, _) = ctl(
        &eps,
        &[
            "backend",
            "drain",
            "pool",
            &a_addr,
            "--wait",
            "--timeout",
            "10",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("drained: no node has connections"), "{out}");
    wait_answers(&cluster, 6, &[("b", 6)]).await;

    let (code, _, _) = ctl(&eps, &["backend", "enable", "pool", &a_addr]);
    assert_eq!(code, 0);
    wait_answers(&cluster, 8, &[("a", 4), ("b", 4)]).await;

    let (code, _, _) = ctl(&eps, &["backend", "disable", "pool", &b_addr]);
    assert_eq!(code, 0);
    wait_answers(&cluster, 6, &[("a", 6)]).await;

    let (code, out, err) = ctl(
        &eps,
        &["backend", "remove", "pool", &b_addr, "--timeout", "10"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("- backend pool/{b_addr}")), "{out}");
    let (_, out, _) = ctl(&eps, &["get", "backends"]);
    assert!(!out.contains(&b_addr), "{out}");

    let (code, out, _) = ctl(&eps, &["history"]);
    assert_eq!(code, 0);
    for expected in [
        "bootstrap by node 1",
        "add backend",
        "set weight",
        "draining",
        "remove backend",
        "api client",
    ] {
        assert!(out.contains(expected), "history lacks {expected:?}:\n{out}");
    }
    let (code, out, _) = ctl(&eps, &["--json", "history"]);
    assert_eq!(code, 0);
    let history: serde_json::Value = serde_json::from_str(&out).expect("json history");
    // bootstrap, add, set-weight, drain, enable, disable, drain and remove
    assert_eq!(history["revisions"].as_array().map(Vec::len), Some(8));
}

#[tokio::test]
async fn dry_run_if_version_and_rollback() {
    let ip = unique_ip();
    let a = HttpBackend::start("a", ip).await;
    let b = HttpBackend::start("b", ip).await;
    let seed = one_frontend("http", 8080, "round_robin", &[a.address], "");
    let cluster = Cluster::start(3, &seed).await;
    let eps = cluster.endpoints();
    let dir = &cluster.nodes[0].dir;
    let to_b = write_file(
        dir,
        "b.toml",
        one_frontend("http", 8080, "round_robin", &[b.address], "").as_bytes(),
    );

    let (code, out, _) = ctl(&eps, &["apply", "-f", &to_b, "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("dry run: nothing changed (configuration is at version 1)"),
        "{out}"
    );
    assert!(
        out.contains(&format!("+ backend pool/{}", b.address)),
        "{out}"
    );
    wait_answers(&cluster, 3, &[("a", 3)]).await;

    let (code, _, err) = ctl(&eps, &["apply", "-f", &to_b, "--if-version", "7"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("refused") && err.contains("version 1, not 7"),
        "{err}"
    );
    assert_eq!(cluster.nodes[1].config_version(), Some(1));

    let (code, out, _) = ctl(&eps, &["apply", "-f", &to_b, "--if-version", "1"]);
    assert_eq!(code, 0, "{out}");
    wait_answers(&cluster, 3, &[("b", 3)]).await;

    let (code, out, _) = ctl(&eps, &["rollback", "1"]);
    assert_eq!(code, 0);
    assert!(out.contains("applied: configuration version 3"), "{out}");
    wait_answers(&cluster, 3, &[("a", 3)]).await;
    let (code, _, err) = ctl(&eps, &["rollback", "99"]);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
}

#[tokio::test]
async fn draining_under_load_finishes_open_requests_and_fails_none() {
    let ip = unique_ip();
    let fast = HttpBackend::start("fast", ip).await;
    let slow = HttpBackend::start_slow(ip, Duration::from_millis(400)).await;
    let seed = one_frontend(
        "http",
        8080,
        "round_robin",
        &[fast.address, slow.address],
        "",
    );
    let cluster = Cluster::start(3, &seed).await;
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url(8080, "/")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for worker in 0..6 {
        let (stop, failures, url) = (stop.clone(), failures.clone(), urls[worker % 3].clone());
        load.push(tokio::spawn(async move {
            let client = client();
            let mut sent = 0;
            // Bounded: at most 200 requests per worker.
            while !stop.load(Ordering::Relaxed) && sent < 200 {
                let request = hyper::Request::get(&url)
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .expect("request");
                match tokio::time::timeout(Duration::from_secs(5), client.request(request)).await {
                    Ok(Ok(response)) if response.status() == StatusCode::OK => {}
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                sent += 1;
            }
        }));
    }
    assert!(
        wait_until(Duration::from_secs(5), || slow.count() >= 3).await,
        "no load reached the slow backend"
    );
    let slow_address = slow.address.to_string();
    let args = [
        "backend",
        "drain",
        "pool",
        &slow_address,
        "--wait",
        "--timeout",
        "10",
    ];
    let (code, out, err) = ctl_async(
        cluster.endpoints(),
        args.iter().map(|a| a.to_string()).collect(),
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("drained"), "{out}");
    let at_drain = slow.count();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load worker");
    }
    assert_eq!(
        slow.count(),
        at_drain,
        "the drained backend got new requests"
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "client requests failed during the drain"
    );
    assert!(fast.count() > 0);
}

#[tokio::test]
async fn bad_input_gets_the_right_code_and_changes_nothing() {
    let ip = unique_ip();
    let a = HttpBackend::start("a", ip).await;
    let seed = one_frontend("http", 8080, "round_robin", &[a.address], "");
    let cluster = Cluster::start(3, &seed).await;
    let eps = cluster.endpoints();
    let dir = &cluster.nodes[0].dir;
    let a_addr = a.address.to_string();
    let port_zero = write_file(
        dir,
        "p0.toml",
        seed.replace("port = 8080", "port = 0").as_bytes(),
    );
    let missing_route = write_file(
        dir,
        "route.toml",
        seed.replace(
            "pool = \"pool\"\n",
            "pool = \"pool\"\n[[frontend.route]]\npath_prefix = \"/x\"\npool = \"ghost\"\n",
        )
        .as_bytes(),
    );
    let empty = write_file(dir, "empty.toml", b"");
    let mut huge_text = seed.clone();
    huge_text.push_str("[[pool]]\nname = \"huge\"\n");
    for i in 0..200_000u32 {
        huge_text.push_str(&format!(
            "  [[pool.backend]]\n  address = \"127.2.{}.{}:{}\"\n",
            i / 250 % 250,
            i % 250 + 1,
            1000 + i / 62_500
        ));
    }
    assert!(huge_text.len() > 10_000_000, "{} bytes", huge_text.len());
    let huge = write_file(dir, "huge.toml", huge_text.as_bytes());
    let not_utf8 = write_file(dir, "bin.toml", &[0xff, 0xfe, b'[', 0x80, b']']);
    let cases: Vec<(&str, Vec<&str>, i32, &str)> = vec![
        (
            "unknown pool",
            vec!["backend", "add", "nopool", "127.0.0.1:1"],
            1,
            "not found",
        ),
        (
            "duplicate backend",
            vec!["backend", "add", "pool", &a_addr],
            1,
            "already exists",
        ),
        (
            "port 0",
            vec!["apply", "-f", &port_zero],
            1,
            "frontend[front].port",
        ),
        (
            "weight out of range",
            vec!["backend", "set-weight", "pool", &a_addr, "999"],
            1,
            "weight",
        ),
        (
            "route to a missing pool",
            vec!["apply", "-f", &missing_route],
            1,
            "ghost",
        ),
        (
            "empty configuration",
            vec!["apply", "-f", &empty],
            1,
            "empty",
        ),
        (
            "huge configuration",
            vec!["apply", "-f", &huge],
            1,
            "larger than the limit",
        ),
        ("invalid UTF-8", vec!["apply", "-f", &not_utf8], 2, "UTF-8"),
        (
            "bad address",
            vec!["backend", "add", "pool", "example.com:80"],
            1,
            "IP:PORT",
        ),
    ];
    for (what, args, code, text) in cases {
        let (got, out, err) = ctl(&eps, &args);
        assert_eq!(got, code, "{what}: {out}{err}");
        assert!(err.contains(text), "{what}: {err}");
        assert!(
            err.lines().count() == 1,
            "{what}: one readable line, got {err:?}"
        );
    }
    let (_, out, err) = ctl(&eps, &["backend", "add", "nopool", "127.0.0.1:1"]);
    assert!(err.starts_with("raftlb ctl: not found"), "{out}{err}");
    for node in &cluster.nodes {
        assert_eq!(node.config_version(), Some(1), "node {} changed", node.id);
    }
    let (code, _, err) = ctl("127.0.0.1:1", &["status"]);
    assert_eq!(code, 3, "{err}");
}

#[tokio::test]
async fn a_token_guards_the_api_and_the_peer_port() {
    let ip = unique_ip();
    let a = HttpBackend::start("a", ip).await;
    let seed = one_frontend("http", 8080, "round_robin", &[a.address], "");
    let options = NodeOptions {
        token: Some("correct horse battery staple".into()),
        ..Default::default()
    };
    let cluster = Cluster::start_with(3, &seed, &options).await;
    let eps = cluster.endpoints();
    let (code, _, err) = ctl(&eps, &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unauthenticated"), "{err}");
    let (code, _, err) = ctl_with_token(&eps, "wrong", &["backend", "add", "pool", "127.0.0.1:2"]);
    assert_eq!(code, 1);
    assert!(err.contains("unauthenticated"), "{err}");
    let (code, out, err) = ctl_with_token(
        &eps,
        "correct horse battery staple",
        &["backend", "add", "pool", "127.0.0.1:2"],
    );
    assert_eq!(code, 0, "{out}{err}");
    for node in &cluster.nodes {
        let reached = wait_until(Duration::from_secs(5), || node.config_version() == Some(2)).await;
        assert!(reached, "node {} did not apply the write", node.id);
    }
    // A peer RPC without the token is refused before Raft sees it.
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}:7100", cluster.nodes[0].ip))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
    let mut peer = raftlb::proto::v1::raft_service_client::RaftServiceClient::new(channel);
    let status = peer
        .vote(raftlb::proto::v1::RaftPayload {
            json: b"{}".to_vec(),
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn watch_sees_a_change_made_through_another_node() {
    let ip = unique_ip();
    let a = HttpBackend::start("a", ip).await;
    let seed = one_frontend("http", 8080, "round_robin", &[a.address], "");
    let cluster = Cluster::start(3, &seed).await;
    let mut watch = Command::new(env!("CARGO_BIN_EXE_raftlb"))
        .args(["ctl", "--endpoint", &cluster.nodes[0].api(), "watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ctl watch");
    let stdout = watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Keep changing through node 3 until node 1's watch reports a change
    // (the first one may land before the stream is open).
    let mut seen = None;
    for attempt in 0..20 {
        let (code, _, err) = ctl(
            &cluster.nodes[2].api(),
            &[
                "backend",
                "add",
                "pool",
                &format!("127.0.0.1:{}", 2000 + attempt),
            ],
        );
        assert_eq!(code, 0, "{err}");
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            if line.contains("config version") {
                seen = Some(line);
                break;
            }
        }
        if seen.is_some() {
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let line = seen.expect("watch printed nothing");
    assert!(
        line.contains("node 1 config version") && line.contains("+1 backend"),
        "{line}"
    );
}

/// The service names a reflection client of protocol version `$version`
/// (`v1` or `v1alpha`: the same messages in two generated modules) lists.
macro_rules! reflected_services {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection")
            .into_inner();
        let response = responses.message().await.expect("message").expect("answer");
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection answer");
        };
        list.service
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<String>>()
    }};
}

#[tokio::test]
async fn grpc_reflection_of_both_versions_lists_only_what_the_api_port_serves() {
    let ip = unique_ip();
    let a = HttpBackend::start("a", ip).await;
    let node = Node::start(&one_frontend("http", 8080, "round_robin", &[a.address], "")).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}:7200", node.ip))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    for alpha in [false, true] {
        let names = if alpha {
            reflected_services!(v1alpha, channel.clone())
        } else {
            reflected_services!(v1, channel.clone())
        };
        assert!(
            names.contains(&"raftlb.v1.ControlService".to_string()),
            "v1alpha {alpha}: {names:?}"
        );
        // The peer-only Raft service is not served on this port.
        assert!(
            !names.iter().any(|n| n.contains("RaftService")),
            "v1alpha {alpha}: {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_top_once_shows_every_nodes_traffic() {
    let backend = HttpBackend::start("a", unique_ip()).await;
    let seed = one_frontend("http", 8080, "round_robin", &[backend.address], "");
    let cluster = Cluster::start(3, &seed).await;
    cluster.wait_leader(Duration::from_secs(10)).await;
    // Light load on every node's frontend, bounded in time and count.
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = cluster
        .nodes
        .iter()
        .map(|node| {
            let (url, stop) = (node.url(8080, "/"), stop.clone());
            tokio::spawn(async move {
                let http = client();
                for _ in 0..300 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (status, _, _) = get(&http, &url, &[]).await;
                    assert_eq!(status, StatusCode::OK);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();
    let endpoints = cluster.endpoints();
    let (code, out, err) = tokio::task::spawn_blocking(move || ctl(&endpoints, &["top", "--once"]))
        .await
        .expect("ctl");
    stop.store(true, Ordering::Relaxed);
    for load in loads {
        load.await.expect("load");
    }
    println!("{out}");
    assert_eq!(code, 0, "{out}{err}");
    for node in &cluster.nodes {
        let row = out
            .lines()
            .find(|line| {
                let cells: Vec<&str> = line.split_whitespace().collect();
                cells.first() == Some(&node.id.to_string().as_str())
                    && cells.get(1) == Some(&"front")
            })
            .unwrap_or_else(|| panic!("no row for node {}'s frontend: {out}", node.id));
        let rate: f64 = row
            .split_whitespace()
            .nth(2)
            .expect("req/s")
            .parse()
            .expect("a rate");
        assert!(rate > 0.0, "node {}: {row}", node.id);
    }
    assert!(out.contains(&backend.address.to_string()), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_status_wait_returns_once_a_new_leader_holds_the_vip() {
    let backend = HttpBackend::start("a", unique_ip()).await;
    let seed = one_frontend("http", 8080, "round_robin", &[backend.address], "");
    let vip = unique_ip();
    let options = NodeOptions {
        vip: Some(vip),
        ..Default::default()
    };
    let mut cluster = Cluster::start_with(3, &seed, &options).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let endpoints = cluster.endpoints();
    let (code, out, err) = {
        let endpoints = endpoints.clone();
        tokio::task::spawn_blocking(move || ctl(&endpoints, &["status", "--wait"]))
            .await
            .expect("ctl")
    };
    assert_eq!(code, 0, "{out}{err}");
    let killed = cluster.nodes[leader].id;
    assert!(
        out.contains(&format!("{vip}: held by node {killed}")),
        "{out}"
    );
    // The holder dies; asked at once (its endpoint among those tried),
    // `status --wait` answers only when another node leads and holds it.
    cluster.nodes[leader].kill9();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        ctl(&endpoints, &["status", "--wait", "--timeout", "20"])
    })
    .await
    .expect("ctl");
    assert_eq!(code, 0, "{out}{err}");
    let holder = out
        .lines()
        .find_map(|l| l.strip_prefix(&format!("VIP {vip}: held by node ")))
        .unwrap_or_else(|| panic!("no holder: {out}"));
    assert_ne!(holder, killed.to_string(), "{out}");
    let new_leader = out
        .lines()
        .next()
        .and_then(|l| l.split("leader node ").nth(1))
        .and_then(|l| l.split(',').next());
    assert_eq!(new_leader, Some(holder), "{out}");
}
