//! ACME: the leader orders a certificate from Pebble (Let's Encrypt's test
//! server, from Debian), a node that is not the leader answers the HTTP-01
//! challenge, every node serves the result, and `ctl cert renew` orders
//! it anew. No key or account secret shows anywhere.

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::*;
use crate::https::{connect_with, served};

/// Pebble and its mock DNS server (pebble-challtestsrv), which answers
/// every A query with `dns_answer`. Stopped when dropped.
struct Pebble {
    directory: String,
    pebble: Child,
    dns: Child,
}

impl Pebble {
    async fn start(ca: &TestCa, dns_answer: IpAddr, http_port: u16) -> Pebble {
        let pebble_bin = debian_tool("pebble", "pebble");
        let dns_bin = debian_tool("pebble-challtestsrv", "pebble");
        let ip = unique_ip();
        let (cert, key) = ca.site("pebble", &[&ip.to_string()]);
        let config = cert.with_file_name("pebble-config.json");
        let json = serde_json::json!({"pebble": {
            "listenAddress": format!("{ip}:14000"),
            "managementListenAddress": format!("{ip}:15000"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": http_port,
            "tlsPort": 5001,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(&config, json.to_string()).expect("pebble config");
        let dns = Command::new(dns_bin)
            .args([
                "-dns01",
                &format!("{ip}:8053"),
                "-management",
                &format!("{ip}:8055"),
            ])
            .args(["-defaultIPv4", &dns_answer.to_string(), "-defaultIPv6", ""])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble-challtestsrv");
        let pebble = Command::new(pebble_bin)
            .args(["-config", &config.display().to_string()])
            .args(["-dnsserver", &format!("{ip}:8053")])
            // No random sleeps before validation, no nonce rejections,
            // and no reuse of valid authorizations (a renewal validates).
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble");
        let listening = SocketAddr::new(ip, 14000);
        assert!(
            wait_until(Duration::from_secs(20), || {
                std::net::TcpStream::connect_timeout(&listening, Duration::from_millis(200)).is_ok()
            })
            .await,
            "pebble did not listen on {listening}"
        );
        Pebble {
            directory: format!("https://{ip}:14000/dir"),
            pebble,
            dns,
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in [&mut self.pebble, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `ctl cert list --json`'s entry `name`.
fn listed(endpoints: &str, name: &str) -> serde_json::Value {
    let (code, out, err) = ctl(endpoints, &["--json", "cert", "list"]);
    assert_eq!(code, 0, "{out}{err}");
    let list: serde_json::Value = serde_json::from_str(&out).expect("json");
    list["certificates"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no certificate {name} in {out}"))
}

/// Waits up to 60 s for `name`'s fingerprint to be other than `before`.
async fn issued_other_than(endpoints: &str, name: &str, before: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let entry = tokio::task::block_in_place(|| listed(endpoints, name));
        let fingerprint = entry["fingerprint"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !fingerprint.is_empty() && fingerprint != before {
            return fingerprint;
        }
        assert!(Instant::now() < deadline, "no certificate issued: {entry}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every node serves the newest version any node has
/// applied (its routing table then holds that version's certificates):
/// `ctl cert list` answers from one node, before the others may have
/// caught up.
async fn every_node_serves_the_newest_version(cluster: &Cluster) {
    let applied = cluster
        .nodes
        .iter()
        .filter_map(|n| {
            let (_, body) = n.admin_get("/version")?;
            serde_json::from_str::<serde_json::Value>(&body).ok()?["applied_version"].as_u64()
        })
        .max()
        .expect("a node answers /version");
    let caught_up = wait_until(Duration::from_secs(10), || {
        cluster
            .nodes
            .iter()
            .all(|n| n.config_version() >= Some(applied))
    })
    .await;
    assert!(caught_up, "not every node serves version {applied}");
}

fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_orders_and_renews_a_certificate_from_pebble() {
    let backend = HttpBackend::start("a", unique_ip()).await;
    let seed = format!(
        "{}\n[[frontend]]\nname = \"site\"\nport = 8443\nprotocol = \"https\"\npool = \"pool\"\n",
        one_frontend("http", 8080, "round_robin", &[backend.address], "")
    );
    let cluster = Cluster::start(3, &seed).await;
    let leader = cluster.leader().expect("a leader");
    let follower = (leader + 1) % cluster.nodes.len();
    let ca = TestCa::new();
    // Every name resolves to the follower: the validator asks it.
    let pebble = Pebble::start(&ca, cluster.nodes[follower].ip, 8080).await;
    let endpoints = cluster.endpoints();
    tokio::task::block_in_place(|| {
        let ca_file = ca.ca().display().to_string();
        let (code, out, err) = ctl(
            &endpoints,
            &[
                "cert",
                "add",
                "site",
                "--acme",
                "--directory",
                &pebble.directory,
                "--domain",
                "acme-site.test",
                "--contact",
                "mailto:ops@example.com",
                "--directory-ca",
                &ca_file,
            ],
        );
        assert_eq!(code, 0, "{out}{err}");
        let pending = listed(&endpoints, "site");
        assert_eq!(pending["acme"], true, "{pending}");
    });
    let first = issued_other_than(&endpoints, "site", "").await;
    every_node_serves_the_newest_version(&cluster).await;
    assert_eq!(
        cluster.leader(),
        Some(leader),
        "leadership moved during the order: the follower may have led"
    );
    // Served by every node, by SNI: the committed leaf, issued by Pebble.
    let mut issuer = String::new();
    for node in &cluster.nodes {
        let tls = tokio::task::block_in_place(|| {
            connect_with(&ca.ca(), node.frontend(8443), Some("acme-site.test"), true)
        });
        let leaf = served(&tls);
        assert_eq!(sha256_hex(&leaf), first, "node {}", node.id);
        let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).expect("leaf");
        issuer = parsed.issuer().to_string();
    }
    assert!(issuer.contains("Pebble"), "issued by {issuer}");
    let follower_log = cluster.nodes[follower].log();
    let leader_log = cluster.nodes[leader].log();
    assert!(
        leader_log.contains("ACME certificate issued and committed"),
        "the leader did not order it"
    );
    assert!(
        !follower_log.contains("ordering an ACME certificate"),
        "a follower ordered"
    );

    // Renewal on demand: a new order, a new certificate everywhere.
    tokio::task::block_in_place(|| {
        let (code, out, err) = ctl(&endpoints, &["cert", "renew", "site"]);
        assert_eq!(code, 0, "{out}{err}");
    });
    let second = issued_other_than(&endpoints, "site", &first).await;
    every_node_serves_the_newest_version(&cluster).await;
    let tls = tokio::task::block_in_place(|| {
        connect_with(
            &ca.ca(),
            cluster.nodes[follower].frontend(8443),
            Some("acme-site.test"),
            true,
        )
    });
    assert_eq!(sha256_hex(&served(&tls)), second);
    // Two orders in all: none while a certificate is fresh (a leader that
    // kept ordering would show here).
    let orders = cluster.nodes[leader]
        .log()
        .matches("ordering an ACME certificate")
        .count();
    assert_eq!(orders, 2, "orders by the leader");
    println!(
        "ACME from Pebble: issued by {issuer:?} (sha256 {}…), renewed on demand (sha256 {}…); \
         validated through node {} while node {} led",
        &first[..16],
        &second[..16],
        cluster.nodes[follower].id,
        cluster.nodes[leader].id
    );

    // No key, and no account secret, in what operators see.
    let (_, history, _) = tokio::task::block_in_place(|| ctl(&endpoints, &["history"]));
    let (_, list, _) = tokio::task::block_in_place(|| ctl(&endpoints, &["cert", "list"]));
    for (what, text) in [
        ("history", history),
        ("cert list", list),
        ("leader log", leader_log),
        ("follower log", follower_log),
    ] {
        assert!(!text.contains("PRIVATE KEY"), "a key in {what}");
        assert!(!text.contains("key_pkcs8"), "the account key in {what}");
    }
}
