//! A rehearsal of `cluster-examples/kubernetes` without Kubernetes: its
//! own `node.toml.in` and `cluster.toml`, and certificates made as its
//! `deploy.sh` makes them, run by three nodes in network namespaces whose
//! `resolv.conf` names a cluster DNS (unbound) that answers the
//! StatefulSet's peer names and the application's headless service as
//! CoreDNS would. Root only (namespaces, port 53).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::fixture::*;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/cluster-examples/kubernetes");
const PEERS: &str = "raftlb-peers.lb.svc.cluster.local";
const APP: &str = "web.shop.svc.cluster.local.";

/// Waits until every pod forwards to exactly the application's pods at
/// `want` (port 80) in the pool `web`.
async fn every_node_serves(nodes: &[Node], want: &[Ipv4Addr]) {
    let want: Vec<SocketAddr> = want
        .iter()
        .map(|ip| SocketAddr::new(IpAddr::V4(*ip), 80))
        .collect();
    crate::fixture::every_node_serves(nodes, "web", &want, Duration::from_secs(30)).await;
}

/// The example's `node.toml.in` for pod ordinal `id - 1`, with the
/// pod's mounts replaced: the certificates in `certs`, the seed and the
/// data in the node's folder.
fn node_toml(id: u64, certs: &Path) -> String {
    let template = std::fs::read_to_string(format!("{EXAMPLE}/node.toml.in")).expect("template");
    template
        .replace("@ID@", &id.to_string())
        .replace("/etc/raftlb/tls/", &format!("{}/", certs.display()))
        .replace("/etc/raftlb/cluster.toml", "cluster.toml")
        .replace("/var/lib/raftlb", "data")
}

fn a_record(name: &str, ip: Ipv4Addr) -> String {
    format!("{name} 5 IN A {ip}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_example_runs_on_cluster_dns_and_survives_a_rescheduled_pod() {
    let pid = std::process::id();
    let tag = format!("rl{}k", pid % 100_000);
    if !can_build_namespaces(&tag) {
        println!(
            "drill kubernetes example: SKIPPED (needs root, iproute2 and permission to create network namespaces)"
        );
        return;
    }
    let subnet = 100 + (pid % 100) as u8 + 7;
    let host = |last: u8| Ipv4Addr::new(10, subnet, 0, last);
    let pods: Vec<(String, Ipv4Addr)> = (1..=3u8)
        .map(|id| (format!("{tag}n{id}"), host(10 + id)))
        .collect();
    let net = Netns::create(&tag, host(1), &pods);
    let _resolv = ResolvConf::write(&pods, host(1));

    // The application's pods: HTTP servers on port 80, each at its own
    // address on the bridge.
    let mut app = Vec::new();
    for (name, last) in [("web-a", 201), ("web-b", 202), ("web-c", 203)] {
        Netns::run(&[
            "addr",
            "add",
            &format!("{}/32", host(last)),
            "dev",
            &net.bridge,
        ]);
        let address = SocketAddr::new(IpAddr::V4(host(last)), 80);
        app.push(HttpBackend::start_at(name, address, BackendBehaviour::default()).await);
    }
    let peer = |ordinal: u64| format!("raftlb-{ordinal}.{PEERS}.");
    let mut dns = DnsServer::start_at(
        SocketAddr::new(IpAddr::V4(host(1)), 53),
        "cluster.local.",
        &[
            &a_record(&peer(0), host(11)),
            &a_record(&peer(1), host(12)),
            &a_record(&peer(2), host(13)),
            &a_record(APP, host(201)),
            &a_record(APP, host(202)),
        ],
    );

    // Certificates as deploy.sh makes them.
    let root = std::env::temp_dir().join(format!("raftlb-k8s-{pid}"));
    let _ = std::fs::remove_dir_all(&root);
    let certs = root.join("certs");
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_raftlb"))
        .args(["certs", "init", "--out"])
        .arg(&certs)
        .args((0..3).flat_map(|o| {
            [
                "--node".to_string(),
                // The peer name, and 127.0.0.1 for ctl through a port-forward.
                format!("{}={},127.0.0.1", o + 1, peer(o).trim_end_matches('.')),
            ]
        }))
        .args(["--client", "admin"])
        .output()
        .expect("raftlb certs init");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    // One pod per namespace, with the example's own files.
    let cluster_toml =
        std::fs::read_to_string(format!("{EXAMPLE}/cluster.toml")).expect("cluster.toml");
    let members: Vec<(u64, IpAddr)> = pods
        .iter()
        .enumerate()
        .map(|(i, (_, ip))| (i as u64 + 1, IpAddr::V4(*ip)))
        .collect();
    let mut nodes = launch_in_netns(&tag, &members, &cluster_toml, |id| NodeOptions {
        node_toml: Some(node_toml(id, &certs)),
        ..NodeOptions::default()
    })
    .await;

    // Every pod serves the application's ready pods, found in DNS.
    every_node_serves(&nodes, &[host(201), host(202)]).await;
    let client = client();
    for node in &nodes {
        let mut seen = BTreeSet::new();
        for _ in 0..6 {
            let (status, backend, body) = get(&client, &node.url(8080, "/"), &[]).await;
            assert_eq!(status, hyper::StatusCode::OK, "node {}: {body}", node.id);
            seen.insert(backend);
        }
        assert_eq!(seen, BTreeSet::from(["web-a".into(), "web-b".into()]));
    }

    // raftlb ctl as through `kubectl port-forward`: inside a pod's
    // namespace, to 127.0.0.1, with the admin certificate.
    let listing = std::process::Command::new("ip")
        .args(["netns", "exec", &pods[0].0, env!("CARGO_BIN_EXE_raftlb")])
        .args(["ctl", "--endpoint", "127.0.0.1:7200", "--ca"])
        .arg(certs.join("ca.pem"))
        .arg("--cert")
        .arg(certs.join("admin.pem"))
        .arg("--key")
        .arg(certs.join("admin-key.pem"))
        .args(["get", "backends"])
        .output()
        .expect("raftlb ctl");
    let listing = String::from_utf8_lossy(&listing.stdout).to_string()
        + &String::from_utf8_lossy(&listing.stderr);
    assert!(
        listing.contains(&format!("{}:80", host(201))) && listing.contains(&format!("dns {APP}")),
        "{listing}"
    );

    // raftlb-1 (a follower, if it is one) rescheduled: the same volume, a
    // new address under the same name. The others reach it by its name.
    let leader_id = nodes[0].status()["leader"].as_u64().expect("leader");
    let moved = nodes
        .iter()
        .position(|n| n.id != leader_id)
        .expect("a follower");
    let (ns, old_ip) = pods[moved].clone();
    let new_ip = host(20 + moved as u8 + 1);
    nodes[moved].kill9();
    Netns::run(&[
        "-n",
        &ns,
        "addr",
        "del",
        &format!("{old_ip}/24"),
        "dev",
        "eth0",
    ]);
    Netns::run(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{new_ip}/24"),
        "dev",
        "eth0",
    ]);
    dns.set(
        &peer(moved as u64),
        &[&a_record(&peer(moved as u64), new_ip)],
    );
    nodes[moved].ip = IpAddr::V4(new_ip);
    nodes[moved].admin = SocketAddr::new(IpAddr::V4(new_ip), 7300);
    nodes[moved].launch();
    nodes[moved].wait_ready().await;

    // The application scales: a pod added, one gone. The leader commits
    // it, and the moved pod serves it too.
    dns.set(APP, &[&a_record(APP, host(202)), &a_record(APP, host(203))]);
    every_node_serves(&nodes, &[host(202), host(203)]).await;
    println!(
        "kubernetes example rehearsal: node {} moved from {old_ip} to {new_ip} under {}; every pod follows the app's DNS",
        nodes[moved].id,
        peer(moved as u64)
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// `/etc/netns/NAME/resolv.conf` for each namespace (what `ip netns exec`
/// shows its programs as `/etc/resolv.conf`): a pod's, with the cluster
/// DNS, its search domains and `ndots:5`. Removed on drop.
struct ResolvConf(Vec<std::path::PathBuf>);

impl ResolvConf {
    fn write(namespaces: &[(String, Ipv4Addr)], nameserver: Ipv4Addr) -> ResolvConf {
        let dirs = namespaces
            .iter()
            .map(|(name, _)| {
                let dir = Path::new("/etc/netns").join(name);
                std::fs::create_dir_all(&dir).expect("/etc/netns");
                std::fs::write(
                    dir.join("resolv.conf"),
                    format!(
                        "search lb.svc.cluster.local svc.cluster.local cluster.local\n\
                         nameserver {nameserver}\noptions ndots:5\n"
                    ),
                )
                .expect("resolv.conf");
                dir
            })
            .collect();
        ResolvConf(dirs)
    }
}

impl Drop for ResolvConf {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The YAML documents of one of the example's manifests, as JSON (read
/// by Debian's python3-yaml, installed when missing).
fn manifests(file: &str) -> Vec<serde_json::Value> {
    let python = debian_python_module("yaml", "python3-yaml");
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(format!("{EXAMPLE}/{file}"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// What the manifests say agrees with the files the pods read: the peer
/// names in `node.toml.in` are the StatefulSet's pods under its headless
/// service, one per replica, on the ports the services and containers
/// name; the ConfigMap files mounted exist; the application's headless
/// service is the name the pool follows.
#[test]
fn the_kubernetes_manifests_agree_with_the_example_files() {
    let docs = manifests("raftlb.yaml");
    let of_kind = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in raftlb.yaml"))
            .clone()
    };
    let set = of_kind("StatefulSet", "raftlb");
    let namespace = set["metadata"]["namespace"].as_str().expect("namespace");
    let service = set["spec"]["serviceName"].as_str().expect("serviceName");
    let peers = of_kind("Service", service);
    assert_eq!(
        peers["spec"]["clusterIP"], "None",
        "the peer service is headless"
    );
    assert_eq!(peers["spec"]["publishNotReadyAddresses"], true);
    let replicas = set["spec"]["replicas"].as_u64().expect("replicas");
    let template = std::fs::read_to_string(format!("{EXAMPLE}/node.toml.in")).expect("template");
    let config: raftlb::config::NodeConfig =
        toml::from_str(&template.replace("@ID@", "1")).expect("node.toml.in parses");
    let members = config.members().expect("members");
    assert_eq!(members.len() as u64, replicas);
    for (id, address) in &members {
        let port = config.raft_addr.port();
        assert_eq!(
            address,
            &format!(
                "raftlb-{}.{service}.{namespace}.svc.cluster.local:{port}",
                id - 1
            )
        );
        assert!(
            peers["spec"]["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .any(|p| p["port"] == port),
            "the peer service has no port {port}"
        );
    }
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    for mount in container["volumeMounts"].as_array().expect("mounts") {
        if let Some(file) = mount["subPath"].as_str() {
            assert!(
                Path::new(EXAMPLE).join(file).is_file(),
                "{file} is mounted but not in the example"
            );
        }
    }
    let seed: raftlb::config::ClusterSpec = toml::from_str(
        &std::fs::read_to_string(format!("{EXAMPLE}/cluster.toml")).expect("cluster.toml"),
    )
    .expect("cluster.toml parses");
    raftlb::state::validate(&seed).expect("cluster.toml is valid");
    let followed = seed.pools[0]
        .discovery
        .as_ref()
        .expect("discovery")
        .name
        .clone();
    let app = manifests("web.yaml");
    let web = app
        .iter()
        .find(|d| d["kind"] == "Service")
        .expect("the application's service");
    assert_eq!(
        web["spec"]["clusterIP"], "None",
        "the application's service is headless"
    );
    assert_eq!(
        followed,
        format!(
            "{}.{}.svc.cluster.local.",
            web["metadata"]["name"].as_str().expect("name"),
            web["metadata"]["namespace"].as_str().expect("namespace")
        )
    );
}
