//! Deployments through `raftlb ctl traffic`: a blue/green switch under
//! steady load, on a three-node cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hyper::StatusCode;

use crate::fixture::*;

/// What the load saw of one request: when it was sent, its status and the
/// backend that answered.
type Seen = (Instant, StatusCode, String);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blue_green_switch_under_load_fails_nothing_and_lands_on_every_node() {
    let ip = unique_ip();
    let blue = HttpBackend::start("blue", ip).await;
    let green = HttpBackend::start("green", ip).await;
    let seed = format!(
        "[[frontend]]\nname = \"web\"\nport = 8080\nprotocol = \"http\"\npool = \"blue\"\n\n\
         [[pool]]\nname = \"blue\"\n  [[pool.backend]]\n  address = \"{}\"\n\n\
         [[pool]]\nname = \"green\"\n  [[pool.backend]]\n  address = \"{}\"\n",
        blue.address, green.address
    );
    let cluster = Cluster::start(3, &seed).await;
    cluster.wait_leader(Duration::from_secs(10)).await;
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url(8080, "/")).collect();

    // Steady load over the three nodes, bounded in count and time.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, urls) = (stop.clone(), urls.clone());
        tokio::spawn(async move {
            let client = client();
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut seen: Vec<Vec<Seen>> = vec![Vec::new(); urls.len()];
            for i in 0..20_000 {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                let node = i % urls.len();
                let sent = Instant::now();
                let (status, backend, _) = get(&client, &urls[node], &[]).await;
                seen[node].push((sent, status, backend));
            }
            seen
        })
    };
    assert!(
        wait_until(Duration::from_secs(10), || blue.count() >= 30).await,
        "no load on blue"
    );
    let before = cluster.nodes[0].config_version().expect("version");
    let (code, out, err) = ctl_async(
        cluster.endpoints(),
        ["traffic", "switch", "web", "green"]
            .map(String::from)
            .to_vec(),
    )
    .await;
    let acked = Instant::now();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("green"), "{out}");
    // ctl returns once every node serves the switch, and says so.
    assert!(out.contains("served by 3 of 3 nodes"), "{out}");
    let version = before + 1;
    assert!(
        wait_until(Duration::from_secs(10), || cluster
            .nodes
            .iter()
            .all(|n| n.config_version() >= Some(version)))
        .await,
        "the switch did not reach every node"
    );
    let propagated = acked.elapsed();
    let served_everywhere = Instant::now();
    let greens_before = green.count();
    assert!(
        wait_until(Duration::from_secs(10), || green.count()
            >= greens_before + 60)
        .await,
        "no load on green"
    );
    stop.store(true, Ordering::Relaxed);
    let seen = load.await.expect("load");
    let mut failed = 0;
    let mut late_blue = 0;
    let mut total = 0;
    for node in &seen {
        for (sent, status, backend) in node {
            total += 1;
            if *status != StatusCode::OK {
                failed += 1;
            }
            if *sent > served_everywhere && backend != "green" {
                late_blue += 1;
            }
        }
    }
    let served_line = out
        .lines()
        .find(|l| l.contains("served by"))
        .unwrap_or_default();
    println!(
        "blue/green switch under load: {total} requests over 3 nodes, {failed} failed; \
         ctl: {served_line}; every node's /status showed it {} after ctl returned; \
         {late_blue} answered by blue after",
        ms(propagated)
    );
    assert_eq!(failed, 0);
    assert_eq!(late_blue, 0);
    assert!(
        seen.iter()
            .all(|node| node.iter().any(|(_, _, b)| b == "green"))
    );

    // The switch is one version in the history, and rollback undoes it.
    let (_, history, _) = ctl(&cluster.endpoints(), &["history"]);
    let last = history.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&version.to_string())
            && last.contains("traffic switch web green")
            && last.ends_with("~1 frontend"),
        "{history}"
    );
    let (code, out, err) = ctl(&cluster.endpoints(), &["rollback", &before.to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    for node in &cluster.nodes {
        let mut last = String::new();
        for _ in 0..100 {
            last = get(&client(), &node.url(8080, "/"), &[]).await.1;
            if last == "blue" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(last, "blue", "node {} after the rollback", node.id);
    }
    // Bad input changes nothing.
    let (code, _, err) = ctl(&cluster.endpoints(), &["traffic", "switch", "web", "nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("no pool named \"nope\""), "{err}");
}

/// Which of `clients` (one GET each, from its address) green answered.
async fn green_clients(url: &str, clients: &[std::net::IpAddr]) -> Vec<std::net::IpAddr> {
    let mut green = Vec::new();
    for ip in clients {
        let (status, backend, _) = get(&client_from(*ip), url, &[]).await;
        assert_eq!(status, StatusCode::OK);
        if backend == "green" {
            green.push(*ip);
        }
    }
    green
}

/// Of `n` GETs to `url` from `ip` (with `headers`), how many `green`
/// answered.
async fn greens_from(url: &str, ip: std::net::IpAddr, n: usize, headers: &[(&str, &str)]) -> usize {
    let client = client_from(ip);
    let mut green = 0;
    for _ in 0..n {
        green += usize::from(get(&client, url, headers).await.1 == "green");
    }
    green
}

/// Of `n` GETs to `url` (with `headers`), how many `green` answered.
async fn greens(url: &str, n: usize, headers: &[(&str, &str)]) -> usize {
    let client = client();
    let mut green = 0;
    for _ in 0..n {
        let (status, backend, _) = get(&client, url, headers).await;
        assert_eq!(status, StatusCode::OK);
        green += usize::from(backend == "green");
    }
    green
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_takes_its_share_a_header_forces_it_and_shift_moves_it() {
    let ip = unique_ip();
    let blue = HttpBackend::start("blue", ip).await;
    let green = HttpBackend::start("green", ip).await;
    let seed = format!(
        "[[frontend]]\nname = \"web\"\nport = 8080\nprotocol = \"http\"\npool = \"blue\"\n\
         split = [{{ pool = \"blue\", weight = 90 }}, {{ pool = \"green\", weight = 10 }}]\n\
           [[frontend.route]]\n  header = {{ name = \"X-Canary\", value = \"green\" }}\n  pool = \"green\"\n\n\
         [[pool]]\nname = \"blue\"\n  [[pool.backend]]\n  address = \"{}\"\n\n\
         [[pool]]\nname = \"green\"\n  [[pool.backend]]\n  address = \"{}\"\n",
        blue.address, green.address
    );
    let node = Node::start(&seed).await;
    let url = node.url(8080, "/");
    // 2,000 clients, each from its own address.
    let clients: Vec<std::net::IpAddr> = (0..2_000).map(|_| unique_ip()).collect();
    let on_green = green_clients(&url, &clients).await;
    let canary = on_green.len();
    assert!((140..=260).contains(&canary), "{canary} of 2000 on green");
    // A client stays on its arm.
    assert_eq!(greens_from(&url, on_green[0], 20, &[]).await, 20);
    let blue_client = *clients
        .iter()
        .find(|c| !on_green.contains(c))
        .expect("blue");
    assert_eq!(greens_from(&url, blue_client, 20, &[]).await, 0);
    // The testers' header always wins, for a client on blue too; another
    // value forces nothing.
    assert_eq!(
        greens_from(&url, blue_client, 20, &[("x-canary", "green")]).await,
        20
    );
    assert_eq!(
        greens_from(&url, blue_client, 20, &[("x-canary", "blue")]).await,
        0
    );

    let endpoints = node.api();
    let (code, out, err) = ctl_served(&node, &["traffic", "shift", "web", "green", "50"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let at_half = green_clients(&url, &clients[..400]).await;
    let half = at_half.len();
    assert!(
        (140..=260).contains(&half),
        "{half} of 400 on green at 50 %"
    );
    // Growing the canary moves clients to green, never back.
    assert!(
        on_green
            .iter()
            .filter(|c| clients[..400].contains(c))
            .all(|c| at_half.contains(c)),
        "a green client went back to blue at 50 %"
    );
    let (code, _, err) = ctl(&endpoints, &["traffic", "shift", "web", "blue", "10"]);
    assert_ne!(code, 0);
    assert!(err.contains("own pool"), "{err}");
    let (code, out, err) = ctl_served(&node, &["traffic", "shift", "web", "green", "0"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(green_clients(&url, &clients[..50]).await.is_empty());
    let (code, out, err) = ctl_served(&node, &["traffic", "shift", "web", "green", "100"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(greens(&url, 50, &[]).await, 50);
    println!("canary: {canary} of 2000 clients on green at 10 %, {half} of 400 at 50 %");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_gets_429_and_others_are_served() {
    let backend = HttpBackend::start("a", unique_ip()).await;
    let node = Node::start(&one_frontend(
        "http",
        8080,
        "round_robin",
        &[backend.address],
        "rate_limit = { requests_per_second = 2, burst = 5 }",
    ))
    .await;
    let url = node.url(8080, "/");
    // A client from another loopback address than the default one.
    let other = client_from(unique_ip());
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..20 {
        let request = hyper::Request::get(&url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        let response = client().request(request).await.expect("answer");
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
        }
        statuses.push(response.status().as_u16());
    }
    let refused = statuses.iter().filter(|s| **s == 429).count();
    // The burst (5) first, then about one in the rate's worth of the time
    // the requests took.
    assert!(statuses[..5].iter().all(|s| *s == 200), "{statuses:?}");
    assert!((10..=15).contains(&refused), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    let request = hyper::Request::get(&url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let answer = other.request(request).await.expect("answer");
    assert_eq!(
        answer.status(),
        StatusCode::OK,
        "another client was limited"
    );
    assert_eq!(
        node.metric("raftlb_frontend_rate_limited_total{frontend=\"front\"}"),
        Some(refused as f64)
    );
    assert_eq!(
        backend.count(),
        20 - refused + 1,
        "a refused request reached the backend"
    );
}

/// GETs to `url` from 200 client addresses in turn until `stop` (bounded
/// in count and time); how many failed.
fn steady_load(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let clients: Vec<_> = (0..200).map(|_| client_from(unique_ip())).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut failed = 0;
        for i in 0..20_000 {
            if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                break;
            }
            let (status, _, _) = get(&clients[i % clients.len()], &url, &[]).await;
            failed += usize::from(status != StatusCode::OK);
        }
        failed
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_walk_goes_on_while_green_is_healthy_and_rolls_back_on_5xx() {
    let ip = unique_ip();
    let blue = HttpBackend::start("blue", ip).await;
    let green = HttpBackend::start("green", ip).await;
    let broken = HttpBackend::start_with(
        "broken",
        ip,
        BackendBehaviour {
            status: 503,
            ..Default::default()
        },
    )
    .await;
    let seed = format!(
        "[[frontend]]\nname = \"web\"\nport = 8080\nprotocol = \"http\"\npool = \"blue\"\n\n\
         [[pool]]\nname = \"blue\"\n  [[pool.backend]]\n  address = \"{}\"\n\n\
         [[pool]]\nname = \"green\"\n  [[pool.backend]]\n  address = \"{}\"\n\n\
         [[pool]]\nname = \"broken\"\n  [[pool.backend]]\n  address = \"{}\"\n",
        blue.address, green.address, broken.address
    );
    let node = Node::start(&seed).await;
    let endpoints = node.api();
    let stop = Arc::new(AtomicBool::new(false));
    let load = steady_load(node.url(8080, "/"), stop.clone());

    // A broken release: 5xx at the first step, and the walk undoes it.
    let (code, out, err) = ctl_async(
        endpoints.clone(),
        "traffic shift web broken 20 --step 40 --every 600ms --until 100 --max-5xx 10"
            .split(' ')
            .map(String::from)
            .collect(),
    )
    .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(" 20 %: broken answered"), "{out}");
    assert!(err.contains("rolled back"), "{err}");
    assert!(broken.count() > 0, "the step sent nothing to broken");
    let (_, config, _) = ctl(&endpoints, &["get"]);
    assert!(
        !config.contains("split") && config.contains("pool = \"blue\""),
        "{config}"
    );
    let after_rollback = broken.count();
    let (_, history, _) = ctl(&endpoints, &["history"]);
    let lines: Vec<&str> = history.lines().rev().take(2).collect();
    assert!(
        lines[0].contains("traffic walk rolled back: broken answered")
            && lines[1].contains("traffic shift web broken 20 (walk to 100, step 40)"),
        "{history}"
    );

    // A healthy one walks to the end: green takes it all.
    let (code, out, err) = ctl_async(
        endpoints.clone(),
        "traffic shift web green 50 --step 50 --every 400ms --until 100"
            .split(' ')
            .map(String::from)
            .collect(),
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(" 50 %: green answered") && out.contains("100 %: green answered"),
        "{out}"
    );
    let greens_before = green.count();
    assert!(
        wait_until(Duration::from_secs(10), || green.count()
            >= greens_before + 50)
        .await,
        "no load on green"
    );
    stop.store(true, Ordering::Relaxed);
    let failed = load.await.expect("load");
    let blues = blue.count();
    assert_eq!(get(&client(), &node.url(8080, "/"), &[]).await.1, "green");
    assert_eq!(blue.count(), blues);
    println!(
        "canary walk: broken rolled back after {after_rollback} requests at 20 %; \
         green walked 50 → 100 %; {failed} failed requests in all"
    );
    // What failed was broken's: every one of its answers, and nothing else.
    assert_eq!(failed, broken.count());
}
