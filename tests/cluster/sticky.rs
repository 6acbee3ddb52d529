//! Sticky sessions by an inserted cookie (`[pool.sticky]`): a client keeps
//! its backend across requests, across the VIP holder's death and across
//! a drain; a backend that is gone is replaced and the cookie rewritten.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::fixture::*;

/// One GET to `url` with the sticky cookie `cookie` (if any): the backend
/// that answered and the `Set-Cookie` of the answer (if any).
async fn sticky_get(url: &str, cookie: Option<&str>) -> (String, Option<String>) {
    let mut request = hyper::Request::get(url);
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("theme=dark; {cookie}"));
    }
    let request = request.body(Full::new(Bytes::new())).expect("request");
    let response = tokio::time::timeout(Duration::from_secs(10), client().request(request))
        .await
        .expect("answer in time")
        .expect("answer");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let backend = header("x-backend").unwrap_or_default();
    let set_cookie = header("set-cookie");
    let _ = response.into_body().collect().await;
    (backend, set_cookie)
}

/// `SRV=…` out of a `Set-Cookie` value.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_string()
}

on_both_paths! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_keeps_its_backend_across_requests_failover_and_drain() {
    let ip = unique_ip();
    let backends = [
        HttpBackend::start("a", ip).await,
        HttpBackend::start("b", ip).await,
        HttpBackend::start("c", ip).await,
    ];
    let addresses: Vec<SocketAddr> = backends.iter().map(|b| b.address).collect();
    let seed = format!(
        "{}  [pool.sticky]\n  cookie = \"SRV\"\n  same_site = \"Lax\"\n  drain_timeout_s = 8\n",
        one_frontend("http", 8080, "round_robin", &addresses, "")
    );
    let vip = unique_ip();
    let options = NodeOptions {
        vip: Some(vip),
        ..Default::default()
    };
    let mut cluster = Cluster::start_with(3, &seed, &options).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    assert!(
        wait_until(
            Duration::from_secs(10),
            || cluster.nodes[leader].status()["vip"]["held"] == true
        )
        .await,
        "the VIP is not held"
    );
    let url = format!("http://{}/", SocketAddr::new(vip, 8080));

    // A new client is pinned where round robin sent it.
    let (first, set_cookie) = sticky_get(&url, None).await;
    let set_cookie = set_cookie.expect("a new client gets the cookie");
    assert!(
        set_cookie.ends_with("; Path=/; HttpOnly; SameSite=Lax"),
        "{set_cookie}"
    );
    let cookie = pair(&set_cookie);
    // An opaque id: no address, no port.
    let id = cookie.strip_prefix("SRV=").expect("SRV=");
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{cookie}"
    );
    for _ in 0..100 {
        let (backend, again) = sticky_get(&url, Some(&cookie)).await;
        assert_eq!(backend, first, "the client moved");
        assert_eq!(again, None, "a pinned client's cookie is not set again");
    }
    // The backends never see the sticky cookie; other cookies pass.
    for backend in &backends {
        for seen in backend.requests() {
            let cookies = seen
                .headers
                .get("cookie")
                .map(|v| v.to_str().unwrap_or_default().to_string())
                .unwrap_or_default();
            assert!(!cookies.contains("SRV="), "{cookies}");
        }
    }
    let pinned = backends.iter().find(|b| b.count() > 100).expect("pinned");
    assert!(
        pinned
            .requests()
            .last()
            .is_some_and(|r| r.headers["cookie"] == "theme=dark")
    );

    // The VIP holder dies: the next holder reads the same cookie alike.
    cluster.nodes[leader].kill9();
    let address = SocketAddr::new(vip, 8080);
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_ok()
        })
        .await,
        "no node took the VIP over"
    );
    let (after_failover, _) = sticky_get(&url, Some(&cookie)).await;
    assert_eq!(after_failover, first, "stickiness lost with the VIP holder");

    // Draining: the pinned client stays, new clients go elsewhere.
    let endpoints = cluster.endpoints();
    let drain_began = Instant::now();
    let (code, out, err) = ctl(
        &endpoints,
        &["backend", "drain", "pool", &pinned.address.to_string()],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        wait_until(Duration::from_secs(10), || {
            cluster.nodes.iter().filter(|n| n.is_running()).all(|n| {
                n.admin_get("/status")
                    .is_some_and(|(_, s)| s.contains("draining"))
            })
        })
        .await,
        "the drain did not reach every node"
    );
    for _ in 0..10 {
        assert_eq!(sticky_get(&url, Some(&cookie)).await.0, first);
        let (fresh, _) = sticky_get(&url, None).await;
        assert_ne!(fresh, first, "a new client was sent to a draining backend");
    }
    // Until the drain's deadline (8 s): then the client is sent elsewhere
    // and pinned there, and the drain can end.
    let mut redispatched = None;
    for _ in 0..300 {
        let (backend, set) = sticky_get(&url, Some(&cookie)).await;
        if backend != first {
            redispatched = Some((drain_began.elapsed(), set));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (after, set) = redispatched.expect("still pinned to the draining backend after 15 s");
    assert!(after >= Duration::from_secs(8), "moved after {after:?}");
    assert!(set.is_some(), "moved without a new cookie");

    // The pinned backend dies: the client goes elsewhere, re-pinned.
    pinned.kill().await;
    let (moved, rewritten) = sticky_get(&url, Some(&cookie)).await;
    assert_ne!(moved, first);
    let rewritten = pair(&rewritten.expect("the cookie is rewritten"));
    assert_ne!(rewritten, cookie);
    for _ in 0..20 {
        assert_eq!(sticky_get(&url, Some(&rewritten)).await.0, moved);
    }
    // A cookie naming no backend is a new client.
    let (_, set) = sticky_get(&url, Some("SRV=0123456789abcdef")).await;
    assert!(set.is_some(), "an unknown id is not replaced");
    println!(
        "sticky: pinned to {first} ({cookie}) for 100 requests, a failover and a drain; \
         redispatched {} after the drain began (deadline 8 s); \
         moved to {moved} ({rewritten}) when it died",
        ms(after)
    );
}
}

on_both_paths! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_cookie_chooses_no_backend_when_signing_is_on() {
    let ip = unique_ip();
    let backends = [
        HttpBackend::start("a", ip).await,
        HttpBackend::start("b", ip).await,
    ];
    let addresses: Vec<SocketAddr> = backends.iter().map(|b| b.address).collect();
    let seed = format!(
        "{}  [pool.sticky]\n  cookie = \"SRV\"\n  signed = true\n",
        one_frontend("http", 8080, "round_robin", &addresses, "")
    );
    let node = Node::start(&seed).await;
    // The leader makes the cluster's first key (an HTTP-only cluster keeps
    // keys because a pool signs).
    assert!(
        wait_until(
            Duration::from_secs(10),
            || node.status()["session_ticket_keys"].as_u64() >= Some(1)
        )
        .await,
        "no signing key was made"
    );
    let url = node.url(8080, "/");
    let (first, set) = sticky_get(&url, None).await;
    let signed = pair(&set.expect("a signed cookie"));
    let parts: Vec<&str> = signed.trim_start_matches("SRV=").split('.').collect();
    assert_eq!(parts.len(), 3, "{signed}");
    for _ in 0..20 {
        assert_eq!(sticky_get(&url, Some(&signed)).await.0, first);
    }
    let (other, set) = sticky_get(&url, None).await;
    assert_ne!(other, first);
    let other_id = pair(&set.expect("cookie"))
        .trim_start_matches("SRV=")
        .split('.')
        .next()
        .expect("id")
        .to_string();
    // The other backend's id under the first cookie's key and MAC, and the
    // bare id: neither pins; each is a new client, balanced and given a
    // cookie of its own.
    let forged = [
        format!("SRV={other_id}.{}.{}", parts[1], parts[2]),
        format!("SRV={other_id}"),
    ];
    for cookie in &forged {
        let mut answered = Vec::new();
        for _ in 0..6 {
            let (backend, set) = sticky_get(&url, Some(cookie)).await;
            assert!(set.is_some(), "{cookie} was taken as valid");
            answered.push(backend);
        }
        assert!(
            answered.contains(&first),
            "{cookie} chose {other}: {answered:?}"
        );
    }
}
}

on_both_paths! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_client_keeps_its_arm_by_the_sticky_cookie() {
    let ip = unique_ip();
    let blue = HttpBackend::start("blue", ip).await;
    let green = HttpBackend::start("green", ip).await;
    let seed = format!(
        "[[frontend]]\nname = \"web\"\nport = 8080\nprotocol = \"http\"\npool = \"blue\"\n\
         split = [{{ pool = \"blue\", weight = 50 }}, {{ pool = \"green\", weight = 50 }}]\n\n\
         [[pool]]\nname = \"blue\"\n  [pool.sticky]\n  cookie = \"SRV\"\n  [[pool.backend]]\n  address = \"{}\"\n\n\
         [[pool]]\nname = \"green\"\n  [pool.sticky]\n  cookie = \"SRV\"\n  [[pool.backend]]\n  address = \"{}\"\n",
        blue.address, green.address
    );
    let node = Node::start(&seed).await;
    let url = node.url(8080, "/");
    // New clients (no cookie, one address) draw an arm each.
    let mut cookies = std::collections::HashMap::new();
    for _ in 0..40 {
        let (backend, set) = sticky_get(&url, None).await;
        cookies.insert(backend, pair(&set.expect("a new client gets the cookie")));
    }
    let (on_blue, on_green) = (cookies["blue"].clone(), cookies["green"].clone());
    for _ in 0..30 {
        assert_eq!(
            sticky_get(&url, Some(&on_green)).await,
            ("green".into(), None)
        );
        assert_eq!(
            sticky_get(&url, Some(&on_blue)).await,
            ("blue".into(), None)
        );
    }
    // Shrinking the canary keeps its clients on it; new clients follow the
    // new weights.
    let (code, out, err) = ctl_served(&node, &["traffic", "shift", "web", "green", "1"]).await;
    assert_eq!(code, 0, "{out}{err}");
    for _ in 0..10 {
        assert_eq!(sticky_get(&url, Some(&on_green)).await.0, "green");
    }
    let mut new_on_green = 0;
    for _ in 0..40 {
        new_on_green += usize::from(sticky_get(&url, None).await.0 == "green");
    }
    assert!(
        new_on_green <= 6,
        "{new_on_green} of 40 new clients on green at 1 %"
    );
}
}
