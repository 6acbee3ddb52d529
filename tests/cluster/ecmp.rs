//! Active-active through ECMP (issue 20), in network namespaces (root
//! only; a skip line otherwise): a router namespace running BIRD with
//! multipath into its kernel table, three raftlb nodes each with its own
//! BIRD peering with it (configured by `raftlb bird-config`), and a client
//! behind the router.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::*;

/// The router's AS; the nodes share one.
const ROUTER_AS: u32 = 65000;
const NODE_AS: u32 = 65001;

/// Namespaces and BIRD processes beyond [`Netns`]'s, removed on drop.
struct Extra {
    namespaces: Vec<String>,
    birds: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Extra {
    fn drop(&mut self) {
        for bird in &mut self.birds {
            let _ = bird.kill();
            let _ = bird.wait();
        }
        for name in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sh(namespace: &str, script: &str) {
    let status = Command::new("ip")
        .args(["netns", "exec", namespace, "sh", "-c", script])
        .status()
        .expect("sh");
    assert!(status.success(), "in {namespace}: {script}");
}

/// Starts BIRD in `namespace` with `config`, its socket at `socket`.
fn start_bird(bird: &Path, namespace: &str, config: &Path, socket: &Path) -> Child {
    Command::new("ip")
        .args(["netns", "exec", namespace])
        .arg(bird)
        .arg("-f")
        .arg("-c")
        .arg(config)
        .arg("-s")
        .arg(socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bird")
}

/// The next hops of the router's kernel route to `vip` (none: no route).
fn next_hops(router: &str, vip: Ipv4Addr) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-n", router, "route", "show", &vip.to_string()])
        .output()
        .expect("ip route");
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut hops: Vec<String> = words
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_string())
        .collect();
    hops.sort();
    hops
}

/// How often the router's table is looked at: the figures are to within
/// it.
const POLL: Duration = Duration::from_millis(10);

/// Requests each node's frontend counted.
fn requests(nodes: &[Node]) -> Vec<f64> {
    nodes
        .iter()
        .map(|node| {
            node.metric("raftlb_frontend_requests_total{frontend=\"front\"}")
                .unwrap_or(0.0)
        })
        .collect()
}

/// `n` GETs to `target` from namespace `client`, each on a new
/// connection (a new source port); how many were answered.
async fn gets(client: &str, target: SocketAddr, n: usize) -> usize {
    in_netns(client, move || {
        (0..n).filter(|_| get_blocking(target)).count()
    })
    .join()
    .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecmp_spreads_flows_withdraws_killed_cut_off_and_frozen_nodes_and_drains_the_leader_without_a_failure()
 {
    let pid = std::process::id();
    let tag = format!("rl{}e", pid % 100_000);
    if !can_build_namespaces(&tag) {
        println!(
            "ecmp netns: SKIPPED (needs root, iproute2 and permission to create network namespaces)"
        );
        return;
    }
    let bird = debian_tool("bird", "bird2");
    debian_tool("birdc", "bird2");
    let subnet = 100 + (pid % 100) as u8 + 6;
    let host = |last: u8| Ipv4Addr::new(10, subnet, 0, last);
    let vip = Ipv4Addr::new(10, subnet, 9, 9);
    let (router_ns, client_ns) = (format!("{tag}r"), format!("{tag}c"));
    let mut hosts = vec![(router_ns.clone(), host(1))];
    hosts.extend((1..=3u8).map(|id| (format!("{tag}n{id}"), host(10 + id))));
    let net = Netns::create(&tag, host(254), &hosts);
    let dir = std::env::temp_dir().join(format!("raftlb-ecmp-{tag}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut extra = Extra {
        namespaces: vec![client_ns.clone()],
        birds: Vec::new(),
        dir: dir.clone(),
    };

    // The client's network behind the router; the router forwards and
    // hashes flows on ports too.
    Netns::run(&["netns", "add", &client_ns]);
    Netns::run(&[
        "-n", &router_ns, "link", "add", "c0", "type", "veth", "peer", "name", "eth0", "netns",
        &client_ns,
    ]);
    let client_net = |last: u8| Ipv4Addr::new(10, subnet, 1, last);
    sh(
        &router_ns,
        &format!(
            "ip addr add {}/24 dev c0 && ip link set c0 up && sysctl -qw net.ipv4.ip_forward=1 \
             && sysctl -qw net.ipv4.fib_multipath_hash_policy=1",
            client_net(1)
        ),
    );
    sh(
        &client_ns,
        &format!(
            "ip addr add {}/24 dev eth0 && ip link set eth0 up && ip link set lo up \
             && ip route add default via {}",
            client_net(50),
            client_net(1)
        ),
    );
    for id in 1..=3u8 {
        sh(
            &format!("{tag}n{id}"),
            &format!("ip route add default via {}", host(1)),
        );
    }

    // The router's BIRD: a session per node, multipath into the kernel.
    let mut router_conf = format!(
        "router id {router};\nprotocol device {{ scan time 10; }}\n\
         protocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}\n\
         protocol bfd {{ interface \"*\" {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }}; }}\n",
        router = host(1)
    );
    for id in 1..=3u8 {
        router_conf.push_str(&format!(
            "protocol bgp node{id} {{ local as {ROUTER_AS}; neighbor {} as {NODE_AS}; \
             hold time 9; keepalive time 3; connect retry time 1; error wait time 1, 5; bfd on; \
             ipv4 {{ import all; export none; }}; }}\n",
            host(10 + id)
        ));
    }
    let router_conf_path = dir.join("router.conf");
    std::fs::write(&router_conf_path, router_conf).expect("router.conf");
    extra.birds.push(start_bird(
        &bird,
        &router_ns,
        &router_conf_path,
        &dir.join("router.ctl"),
    ));

    // Three nodes announcing the VIP, each through its own BIRD.
    let backend = HttpBackend::start("a", IpAddr::V4(host(254))).await;
    let seed = one_frontend("http", 8080, "round_robin", &[backend.address], "");
    let members: Vec<(u64, IpAddr)> = (1..=3u8)
        .map(|id| (u64::from(id), IpAddr::V4(host(10 + id))))
        .collect();
    let mut nodes = launch_in_netns(&tag, &members, &seed, |id| NodeOptions {
        vip_section: Some(format!("mode = \"bgp\"\naddress = \"{vip}\"\n")),
        sections: format!(
            "[bgp]\nlocal_as = {NODE_AS}\npeer = \"{}\"\npeer_as = {ROUTER_AS}\nbfd = true\n\
             bird_socket = \"{}\"\nwithdraw_wait_ms = 500\n",
            host(1),
            dir.join(format!("n{id}.ctl")).display()
        ),
        ..Default::default()
    })
    .await;
    for node in &nodes {
        let out = Command::new(env!("CARGO_BIN_EXE_raftlb"))
            .args(["bird-config", "--config"])
            .arg(node.dir.join("node.toml"))
            .output()
            .expect("bird-config");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = node.dir.join("bird.conf");
        std::fs::write(&conf, &out.stdout).expect("bird.conf");
        let namespace = node.netns.clone().expect("netns");
        let socket = dir.join(format!("n{}.ctl", node.id));
        extra
            .birds
            .push(start_bird(&bird, &namespace, &conf, &socket));
    }

    // Every node announces: three next hops at the router.
    let all: Vec<String> = (1..=3u8).map(|id| host(10 + id).to_string()).collect();
    let spread_in = time_until(Duration::from_secs(30), POLL, || {
        next_hops(&router_ns, vip) == all
    })
    .await;
    if spread_in.is_none() {
        for node in &nodes {
            eprintln!("node {} bgp: {}", node.id, node.status()["vip"]["bgp"]);
        }
    }
    assert!(
        spread_in.is_some(),
        "the router never had all three nodes as next hops: {:?}",
        next_hops(&router_ns, vip)
    );
    // Each node's status says so once it has read BIRD's session state
    // (every second).
    for node in &nodes {
        let announcing = || {
            let bgp = &node.status()["vip"]["bgp"];
            bgp["announcing"] == true && bgp["session"] == "Established"
        };
        let shown = time_until(Duration::from_secs(5), POLL, announcing).await;
        assert!(
            shown.is_some(),
            "node {}: {}",
            node.id,
            node.status()["vip"]["bgp"]
        );
    }

    // Flows spread over the three nodes.
    let target = SocketAddr::new(IpAddr::V4(vip), 8080);
    let before = requests(&nodes);
    let sent = 300;
    assert_eq!(gets(&client_ns, target, sent).await, sent);
    let after = requests(&nodes);
    let shares: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a - b) / sent as f64)
        .collect();
    eprintln!("ecmp shares over three nodes: {shares:?}");
    for (i, share) in shares.iter().enumerate() {
        assert!(
            (0.20..=0.47).contains(share),
            "node {} served {:.0} % of the flows: {shares:?}",
            i + 1,
            share * 100.0
        );
    }

    // kill -9 of one node's raftlb (its BIRD keeps running): its route is
    // withdrawn at the router, and new connections reach the others.
    nodes[0].kill9();
    let killed = Instant::now();
    let rest: Vec<String> = all[1..].to_vec();
    let withdrawn = time_until(Duration::from_secs(10), POLL, || {
        next_hops(&router_ns, vip) == rest
    })
    .await;
    let withdrawn = withdrawn.map(|_| killed.elapsed());
    eprintln!("ecmp: kill -9 to withdrawal at the router: {withdrawn:?}");
    assert!(
        withdrawn.is_some(),
        "the killed node's route stayed at the router: {:?}",
        next_hops(&router_ns, vip)
    );
    let before = requests(&nodes[1..]);
    assert_eq!(gets(&client_ns, target, 60).await, 60);
    let after = requests(&nodes[1..]);
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(a > b, "node {} took no flow after the kill", i + 2);
    }

    // The killed node back: it announces again once it is in the quorum.
    nodes[0].launch();
    nodes[0].wait_ready().await;
    let back = time_until(Duration::from_secs(20), POLL, || {
        next_hops(&router_ns, vip) == all
    })
    .await;
    assert!(
        back.is_some(),
        "the restarted node never announced again: {:?}",
        next_hops(&router_ns, vip)
    );

    // Node 3 cut off from the other two, its BGP session up: it withdraws
    // within its lease; healed, it announces again.
    let cut = |add: bool| {
        let verb = if add { "add" } else { "del" };
        for (from, to) in [(3u8, 1u8), (3, 2), (1, 3), (2, 3)] {
            sh(
                &format!("{tag}n{from}"),
                &format!("ip route {verb} blackhole {}/32", host(10 + to)),
            );
        }
    };
    cut(true);
    let partitioned = Instant::now();
    let two: Vec<String> = all[..2].to_vec();
    let withdrawn = time_until(Duration::from_secs(10), POLL, || {
        next_hops(&router_ns, vip) == two
    })
    .await;
    eprintln!(
        "ecmp: partition to withdrawal at the router: {:?}",
        withdrawn.map(|_| partitioned.elapsed())
    );
    let bgp = nodes[2].status()["vip"]["bgp"].clone();
    assert!(
        withdrawn.is_some(),
        "the cut-off node still announces: {:?}, {bgp}",
        next_hops(&router_ns, vip)
    );
    assert!(
        bgp["why_not"].to_string().contains("no quorum") && bgp["session"] == "Established",
        "the cut-off node's status: {bgp}"
    );
    // ctl status says which nodes announce, and the cut-off node says why
    // it does not.
    for (endpoint, wanted) in [
        (nodes[0].api(), "announced by nodes [1, 2]"),
        (nodes[2].api(), "withdrawn: no quorum"),
    ] {
        let shown = time_until(Duration::from_secs(5), POLL, || {
            let (code, out, _) = ctl(&endpoint, &["status"]);
            code == 0 && out.contains(wanted)
        })
        .await;
        assert!(
            shown.is_some(),
            "ctl status at {endpoint} during the partition, without {wanted:?}: {}",
            ctl(&endpoint, &["status"]).1
        );
    }
    assert_eq!(nodes[0].metric("raftlb_bgp_session_established"), Some(1.0));
    cut(false);
    let healed = time_until(Duration::from_secs(20), POLL, || {
        next_hops(&router_ns, vip) == all
    })
    .await;
    assert!(healed.is_some(), "the healed node never announced again");

    // Node 3's process frozen: its address's lifetime runs out, though
    // its BIRD keeps the session up.
    nodes[2].signal("STOP");
    let frozen = Instant::now();
    let withdrawn = time_until(Duration::from_secs(10), POLL, || {
        next_hops(&router_ns, vip) == two
    })
    .await;
    eprintln!(
        "ecmp: freeze to withdrawal at the router: {:?}",
        withdrawn.map(|_| frozen.elapsed())
    );
    nodes[2].signal("CONT");
    assert!(withdrawn.is_some(), "a frozen node still announced");
    let thawed = time_until(Duration::from_secs(20), POLL, || {
        next_hops(&router_ns, vip) == all
    })
    .await;
    assert!(thawed.is_some(), "the thawed node never announced again");

    // Node 3's whole machine gone from the network (its link cut): its
    // BIRD cannot withdraw; the router's BFD (100 ms x 3) notices.
    Netns::run(&["link", "set", &net.veth(3), "down"]);
    let cut_at = Instant::now();
    let withdrawn = time_until(Duration::from_secs(10), POLL, || {
        next_hops(&router_ns, vip) == two
    })
    .await;
    eprintln!(
        "ecmp: link cut to withdrawal at the router (BFD): {:?}",
        withdrawn.map(|_| cut_at.elapsed())
    );
    Netns::run(&["link", "set", &net.veth(3), "up"]);
    assert!(
        withdrawn.is_some(),
        "a node whose link was cut stayed in the route"
    );
    let back = time_until(Duration::from_secs(30), POLL, || {
        next_hops(&router_ns, vip) == all
    })
    .await;
    assert!(
        back.is_some(),
        "the node whose link came back never announced again"
    );

    // ctl node drain: node 2 withdraws and takes no new flows; undrained,
    // it announces again.
    let endpoint = nodes[0].api();
    let (code, out, err) = ctl(&endpoint, &["node", "drain", "2"]);
    assert_eq!(code, 0, "ctl node drain: {out}{err}");
    let without_2: Vec<String> = vec![all[0].clone(), all[2].clone()];
    let drained = time_until(Duration::from_secs(5), POLL, || {
        next_hops(&router_ns, vip) == without_2
    })
    .await;
    assert!(drained.is_some(), "a drained node still announced");
    assert!(
        nodes[1].status()["vip"]["bgp"]["why_not"]
            .to_string()
            .contains("draining")
    );
    let before = requests(&nodes[1..2]);
    assert_eq!(gets(&client_ns, target, 30).await, 30);
    assert_eq!(
        requests(&nodes[1..2]),
        before,
        "a drained node took new flows"
    );
    let (code, out, err) = ctl(&endpoint, &["node", "undrain", "2"]);
    assert_eq!(code, 0, "ctl node undrain: {out}{err}");
    let undrained = time_until(Duration::from_secs(5), POLL, || {
        next_hops(&router_ns, vip) == all
    })
    .await;
    assert!(
        undrained.is_some(),
        "an undrained node did not announce again"
    );
    let (code, out, err) = ctl(&endpoint, &["status", "--wait"]);
    assert_eq!(code, 0, "ctl status --wait in BGP mode: {out}{err}");

    // SIGTERM of the leader (two stay, a quorum): it withdraws first, serves what the router still
    // sends it, and drains after; new connections meanwhile all succeed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        in_netns(&client_ns, move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let (mut sent, mut failed) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                sent += 1;
                if !get_blocking(target) {
                    failed += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (sent, failed)
        })
    };
    // The leader: the others elect a new one meanwhile, and must go on
    // announcing through the election.
    let mut leader = None;
    time_until(Duration::from_secs(10), POLL, || {
        leader = nodes.iter().position(|n| {
            n.try_status()
                .is_some_and(|status| status["role"] == "leader")
        });
        leader.is_some()
    })
    .await;
    let leader = leader.expect("a leader");
    nodes[leader].signal("TERM");
    let termed = Instant::now();
    let last: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, hop)| hop.clone())
        .collect();
    let withdrawn = time_until(Duration::from_secs(10), POLL, || {
        next_hops(&router_ns, vip) == last
    })
    .await;
    eprintln!("ecmp: SIGTERM to withdrawal at the router: {withdrawn:?}");
    assert!(
        withdrawn.is_some(),
        "the draining node's route stayed at the router: {:?}",
        next_hops(&router_ns, vip)
    );
    // The draining node's last new connection: its counter, read until it
    // stops answering.
    let series = "raftlb_frontend_connections_total{frontend=\"front\"}";
    let (mut count, mut last_new) = (nodes[leader].metric(series), termed.elapsed());
    while let Some(now) = nodes[leader].metric(series) {
        if Some(now) != count {
            (count, last_new) = (Some(now), termed.elapsed());
        }
        if termed.elapsed() > Duration::from_secs(15) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("ecmp: SIGTERM to the draining node's last new connection: {last_new:?}");
    let exit = nodes[leader].wait_exit(Duration::from_secs(15)).await;
    eprintln!("ecmp: SIGTERM to exit: {:?}", termed.elapsed());
    assert_eq!(exit, Some(0), "the draining node's exit");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed) = load.join().expect("load");
    eprintln!("ecmp: {sent} requests across the SIGTERM, {failed} failed");
    assert!(sent > 10, "too few requests across the SIGTERM: {sent}");
    assert_eq!(failed, 0, "requests failed across a node's SIGTERM");

    drop(nodes);
    drop(extra);
    drop(backend);
    drop(net);
}
