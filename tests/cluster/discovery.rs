//! Backends from DNS (`[pool.discovery]`): a real name server (unbound)
//! whose records the test changes while three nodes serve.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fixture::*;

/// How long until every running node serves exactly `want` in `pool`.
async fn every_node_serves(cluster: &Cluster, pool: &str, want: &[SocketAddr]) -> Duration {
    crate::fixture::every_node_serves(&cluster.nodes, pool, want, Duration::from_secs(15)).await
}

/// `pool`'s discovery entry in `node`'s `/status`.
fn discovery_status(node: &Node, pool: &str) -> Option<serde_json::Value> {
    node.try_status()?["discovery"]
        .as_array()?
        .iter()
        .find(|d| d["pool"] == pool)
        .cloned()
}

/// Waits until every running node shows `pool` stale for `reason`
/// (`None`: not stale).
async fn every_node_shows_stale(cluster: &Cluster, pool: &str, reasons: &[&str]) {
    let shown = wait_until(Duration::from_secs(15), || {
        cluster.nodes.iter().filter(|n| n.is_running()).all(|n| {
            let reason = discovery_status(n, pool)
                .and_then(|d| d["stale_reason"].as_str().map(str::to_string));
            match reason {
                None => reasons.is_empty(),
                Some(reason) => reasons.contains(&reason.as_str()),
            }
        })
    })
    .await;
    assert!(
        shown,
        "pool {pool} not shown stale for {reasons:?}: {:?}",
        cluster
            .nodes
            .iter()
            .map(|n| discovery_status(n, pool))
            .collect::<Vec<_>>()
    );
}

fn a_record(name: &str, backend: &HttpBackend) -> String {
    format!("{name} 1 IN A {}", backend.address.ip())
}

/// An A record of `name` for each backend's address.
fn a_records(name: &str, backends: &[&HttpBackend]) -> Vec<String> {
    backends.iter().map(|b| a_record(name, b)).collect()
}

fn srv_record(target: &str, backend: &HttpBackend, weight: u16) -> String {
    format!(
        "_http._tcp.api.test. 1 IN SRV 0 {weight} {} {target}",
        backend.address.port()
    )
}

/// Waits for `lookups` more successful lookups of `pool` by the leader
/// (the leader's `raftlb_discovery_lookups_total`), and checks that no
/// node's configuration version moved meanwhile: an unchanged answer
/// writes nothing.
async fn unchanged_answers_write_nothing(cluster: &Cluster, pool: &str, lookups: f64) {
    let leader = &cluster.nodes[cluster.wait_leader(Duration::from_secs(10)).await];
    let series = format!("raftlb_discovery_lookups_total{{pool=\"{pool}\",result=\"ok\"}}");
    let versions = |cluster: &Cluster| -> Vec<Option<u64>> {
        cluster
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(Node::config_version)
            .collect()
    };
    let before = versions(cluster);
    let start = leader.metric(&series).unwrap_or(0.0);
    let looked = wait_until(Duration::from_secs(15), || {
        leader.metric(&series).unwrap_or(0.0) >= start + lookups
    })
    .await;
    assert!(looked, "the leader made no {lookups} lookups of {pool}");
    assert_eq!(
        versions(cluster),
        before,
        "an unchanged answer made a version"
    );
}

/// The source column of `backend`'s row in `ctl get backends`: `config`
/// or `dns NAME`.
fn source_of(endpoints: &str, backend: &HttpBackend) -> Option<String> {
    let (code, listing, _) = ctl(endpoints, &["get", "backends"]);
    assert_eq!(code, 0, "{listing}");
    let row = listing
        .lines()
        .find(|l| l.contains(&backend.address.to_string()))?;
    // pool, address, weight, admin_state, health, source
    Some(row.split_whitespace().skip(5).collect::<Vec<_>>().join(" "))
}

/// Which backends answer `n` GETs through `node`'s frontend on `port`.
async fn answering(node: &Node, port: u16, n: usize) -> BTreeSet<String> {
    let client = client();
    let mut names = BTreeSet::new();
    for _ in 0..n {
        let (status, backend, body) = get(&client, &node.url(port, "/"), &[]).await;
        assert_eq!(status, hyper::StatusCode::OK, "node {}: {body}", node.id);
        names.insert(backend);
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_follow_a_and_srv_records_on_every_node_and_keep_their_last_set_when_dns_fails() {
    // Three web backends on one port at three addresses (A records give
    // addresses only), two api backends found by SRV.
    let w1 = HttpBackend::start("w1", unique_ip()).await;
    let port = w1.address.port();
    let at = |b: &HttpBackend| SocketAddr::new(unique_ip(), b.address.port());
    let w2 = HttpBackend::start_at("w2", at(&w1), BackendBehaviour::default()).await;
    let w3 = HttpBackend::start_at("w3", at(&w1), BackendBehaviour::default()).await;
    let s1 = HttpBackend::start("s1", unique_ip()).await;
    let s2 = HttpBackend::start("s2", unique_ip()).await;
    let web = "web.test.";
    let api = "_http._tcp.api.test.";
    // 400 addresses of the documentation networks (never sent traffic):
    // an answer too long for UDP, so the resolver asks again over TCP.
    let many: Vec<SocketAddr> = (1..=200u8)
        .flat_map(|i| {
            [
                format!("198.51.100.{i}:8080"),
                format!("203.0.113.{i}:8080"),
            ]
        })
        .map(|a| a.parse().expect("address"))
        .collect();
    let mut records = vec![
        a_record(web, &w1),
        a_record(web, &w2),
        srv_record("s1.test.", &s1, 10),
        a_record("s1.test.", &s1),
        "web6.test. 1 IN AAAA 2001:db8::5".to_string(),
        "web6.test. 1 IN AAAA 2001:db8::6".to_string(),
    ];
    records.extend(many.iter().map(|a| format!("many.test. 1 IN A {}", a.ip())));
    let mut dns = DnsServer::start(
        "test.",
        &records.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let toml = format!(
        r#"
[[frontend]]
name = "web"
port = 8080
protocol = "http"
pool = "web"
[[frontend]]
name = "api"
port = 8081
protocol = "http"
pool = "api"
[[pool]]
name = "web"
  [pool.discovery]
  name = "web.test"
  type = "A"
  port = {port}
  resolvers = ["{dns}"]
  interval_ms = 200
  remove_after = 2
[[pool]]
name = "api"
algorithm = "weighted_round_robin"
  [pool.discovery]
  name = "_http._tcp.api.test"
  type = "SRV"
  resolvers = ["{dns}"]
  interval_ms = 200
  remove_after = 1
[[pool]]
name = "many"
  [pool.discovery]
  name = "many.test"
  type = "A"
  port = 8080
  resolvers = ["{dns}"]
  interval_ms = 200
[[pool]]
name = "v6"
  [pool.discovery]
  name = "web6.test"
  type = "AAAA"
  port = 8080
  weight = 4
  resolvers = ["{dns}"]
  interval_ms = 200
"#,
        dns = dns.address
    );
    let mut cluster = Cluster::start(3, &toml).await;
    let endpoints = cluster.endpoints();

    // The first answers, on every node, and traffic by them.
    every_node_serves(&cluster, "web", &[w1.address, w2.address]).await;
    every_node_serves(&cluster, "api", &[s1.address]).await;
    // AAAA: addresses of the documentation prefix, never sent traffic
    // (the pool has no frontend); every node lists them.
    let v6: Vec<SocketAddr> = ["[2001:db8::5]:8080", "[2001:db8::6]:8080"]
        .iter()
        .map(|a| a.parse().expect("address"))
        .collect();
    every_node_serves(&cluster, "v6", &v6).await;
    every_node_serves(&cluster, "many", &many).await;
    let weights: Vec<u64> = cluster.nodes[0].status()["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .filter(|b| b["pool"] == "v6")
        .filter_map(|b| b["weight"].as_u64())
        .collect();
    assert_eq!(weights, vec![4, 4], "[pool.discovery] weight");
    for node in &cluster.nodes {
        assert_eq!(
            answering(node, 8080, 6).await,
            BTreeSet::from(["w1".into(), "w2".into()])
        );
    }
    assert_eq!(source_of(&endpoints, &w1).as_deref(), Some("dns web.test"));

    unchanged_answers_write_nothing(&cluster, "web", 3.0).await;

    // An A record added: every node forwards to it, and `ctl watch` shows
    // the change as it is committed.
    let watch = CtlWatch::start(&endpoints);
    dns.set(web, &a_records(web, &[&w1, &w2, &w3]));
    let added = every_node_serves(&cluster, "web", &[w1.address, w2.address, w3.address]).await;
    watch.wait_for("+1 backend (by dns web.test)").await;
    for node in &cluster.nodes {
        assert!(
            answering(node, 8080, 6).await.contains("w3"),
            "node {}",
            node.id
        );
    }

    // SRV: a second target with its own port and weight.
    dns.set("s2.test.", &[&a_record("s2.test.", &s2)]);
    dns.set(
        api,
        &[
            &srv_record("s1.test.", &s1, 10),
            &srv_record("s2.test.", &s2, 30),
        ],
    );
    let srv_added = every_node_serves(&cluster, "api", &[s1.address, s2.address]).await;
    let (_, json, _) = ctl(&endpoints, &["get", "backends", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&json).expect("json");
    let weight_of = |backend: &HttpBackend| {
        listed["backends"]
            .as_array()
            .and_then(|rows| {
                rows.iter()
                    .find(|r| r["address"] == backend.address.to_string())
            })
            .map(|r| {
                (
                    r["weight"].as_u64(),
                    r["discovered"].as_str().map(str::to_string),
                )
            })
    };
    let srv_name = Some("_http._tcp.api.test".to_string());
    assert_eq!(weight_of(&s1), Some((Some(10), srv_name.clone())), "{json}");
    assert_eq!(weight_of(&s2), Some((Some(30), srv_name)), "{json}");
    assert_eq!(
        answering(&cluster.nodes[0], 8081, 8).await,
        BTreeSet::from(["s1".into(), "s2".into()])
    );
    // A target's record gone: the set follows (remove_after = 1).
    dns.set(api, &[&srv_record("s2.test.", &s2, 30)]);
    let srv_removed = every_node_serves(&cluster, "api", &[s2.address]).await;

    // A record removed while a long request to its backend runs: the
    // request finishes; no new one goes there.
    let node = &cluster.nodes[0];
    let mut upload = tokio::net::TcpStream::connect(node.frontend(8080))
        .await
        .expect("connect");
    let body_len = 256 * 1024;
    upload
        .write_all(
            format!("POST /upload HTTP/1.1\r\nHost: web\r\nContent-Length: {body_len}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("head");
    upload
        .write_all(&vec![b'x'; 64 * 1024])
        .await
        .expect("part");
    let mut busy = None;
    let found = wait_until(Duration::from_secs(10), || {
        busy = node.try_status().and_then(|s| {
            s["backends"].as_array()?.iter().find_map(|b| {
                (b["pool"] == "web" && b["active_connections"].as_i64() > Some(0))
                    .then(|| b["address"].as_str().map(str::to_string))
                    .flatten()
            })
        });
        busy.is_some()
    })
    .await;
    assert!(found, "the upload reached no backend");
    let busy = busy.expect("busy backend");
    let all = [&w1, &w2, &w3];
    let (gone, kept): (Vec<&HttpBackend>, Vec<&HttpBackend>) =
        all.into_iter().partition(|b| b.address.to_string() == busy);
    let records = a_records(web, &kept);
    dns.set(web, &records);
    let kept_addresses: Vec<SocketAddr> = kept.iter().map(|b| b.address).collect();
    let removed = every_node_serves(&cluster, "web", &kept_addresses).await;
    upload
        .write_all(&vec![b'x'; body_len - 64 * 1024])
        .await
        .expect("rest");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 4096];
        loop {
            let n = upload.read(&mut buffer).await.expect("read");
            answer.extend_from_slice(&buffer[..n]);
            if n == 0 || String::from_utf8_lossy(&answer).contains(&format!("{body_len}\n")) {
                break;
            }
        }
    })
    .await;
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(read.is_ok(), "the long request did not finish: {answer:?}");
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains(&format!("POST /upload {body_len}")),
        "the long request was cut: {answer:?}"
    );
    let gone_name = answer
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|body| body.split_whitespace().next())
        .map(str::to_string)
        .expect("backend name");
    let before = gone[0].count();
    for node in &cluster.nodes {
        assert!(
            !answering(node, 8080, 6).await.contains(&gone_name),
            "node {}",
            node.id
        );
    }
    assert_eq!(
        gone[0].count(),
        before,
        "a new request went to the removed backend"
    );

    // NXDOMAIN: the last set is kept and shown stale on every node.
    dns.remove(web);
    every_node_shows_stale(&cluster, "web", &["NXDOMAIN"]).await;
    every_node_serves(&cluster, "web", &kept_addresses).await;
    let (_, status, _) = ctl(&endpoints, &["status"]);
    assert!(
        status.contains("pool web: 2 backends from DNS A web.test: STALE since"),
        "{status}"
    );
    dns.set(web, &records);
    every_node_shows_stale(&cluster, "web", &[]).await;

    // The name server gone: still the last set, stale, and the metric.
    dns.kill();
    every_node_shows_stale(&cluster, "web", &["unreachable", "timeout"]).await;
    for node in &cluster.nodes {
        assert_eq!(
            node.metric("raftlb_discovery_stale{pool=\"web\"}"),
            Some(1.0),
            "node {}",
            node.id
        );
        assert_eq!(answering(node, 8080, 4).await.len(), 2, "node {}", node.id);
    }
    // The status page's banner says since when.
    let (_, live) = cluster.nodes[1]
        .admin_get("/status/live")
        .expect("/status/live");
    assert!(
        live.contains("pool web: DNS lookups of web.test fail") && live.contains("stale since 20"),
        "{live}"
    );
    dns.restart();
    every_node_shows_stale(&cluster, "web", &[]).await;

    // The leader killed: the new one looks up within an interval of its
    // election.
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    cluster.nodes[leader].kill9();
    dns.set(web, &a_records(web, &[&w1, &w2, &w3]));
    let resumed = every_node_serves(&cluster, "web", &[w1.address, w2.address, w3.address]).await;

    // An address written in the file that DNS gives too stays the
    // operator's, and the answers write nothing.
    let mixed = toml.replacen(
        "[[pool]]\nname = \"web\"\n",
        &format!(
            "[[pool]]\nname = \"web\"\n  [[pool.backend]]\n  address = \"{}\"\n",
            w1.address
        ),
        1,
    );
    let file = std::env::temp_dir().join(format!("raftlb-discovery-{}.toml", std::process::id()));
    std::fs::write(&file, &mixed).expect("cluster.toml");
    let (code, out, err) = ctl(
        &cluster.endpoints(),
        &["apply", "--file", &file.display().to_string()],
    );
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, 0, "{out}{err}");
    every_node_serves(&cluster, "web", &[w1.address, w2.address, w3.address]).await;
    let endpoints = cluster.endpoints();
    assert_eq!(source_of(&endpoints, &w1).as_deref(), Some("config"));
    assert_eq!(source_of(&endpoints, &w2).as_deref(), Some("dns web.test"));
    unchanged_answers_write_nothing(&cluster, "web", 3.0).await;

    // Every change is in the history, the name as its caller.
    let (_, history, _) = ctl(&cluster.endpoints(), &["history"]);
    assert!(history.contains("dns web.test"), "{history}");
    assert!(history.contains("dns _http._tcp.api.test"), "{history}");
    eprintln!(
        "DNS change to every node forwarding (interval 200 ms): A added {}, SRV target added {}, \
         SRV target removed (remove_after 1) {}, A removed (remove_after 2) {}, \
         after the leader's kill -9 {}",
        ms(added),
        ms(srv_added),
        ms(srv_removed),
        ms(removed),
        ms(resumed)
    );
}

/// `raftlb ctl watch` running, its output collected.
struct CtlWatch {
    child: std::process::Child,
    seen: std::sync::Arc<std::sync::Mutex<String>>,
}

impl CtlWatch {
    fn start(endpoints: &str) -> CtlWatch {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_raftlb"))
            .args(["ctl", "--endpoint", endpoints, "watch"])
            .env("XDG_CONFIG_HOME", "/nonexistent/raftlb-test")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ctl watch");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (stdout, into) = (child.stdout.take().expect("stdout"), seen.clone());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                into.lock().expect("seen").push_str(&format!("{line}\n"));
            }
        });
        CtlWatch { child, seen }
    }

    /// Waits until a line naming `what` has come; then stops watching.
    async fn wait_for(mut self, what: &str) {
        let seen = self.seen.clone();
        let shown = wait_until(Duration::from_secs(10), || {
            seen.lock().expect("seen").contains(what)
        })
        .await;
        let _ = self.child.kill();
        let _ = self.child.wait();
        assert!(
            shown,
            "ctl watch never showed {what}: {}",
            seen.lock().expect("seen")
        );
    }
}
