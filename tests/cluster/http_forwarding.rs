//! L7: balancing, routing, forwarding headers and failover between backends.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};

use crate::fixture::*;

on_both_paths! {
#[tokio::test]
async fn round_robin_spreads_requests_and_sets_forwarding_headers() {
    let ip = unique_ip();
    let backends = [
        HttpBackend::start("a", ip).await,
        HttpBackend::start("b", ip).await,
        HttpBackend::start("c", ip).await,
    ];
    let addresses: Vec<_> = backends.iter().map(|b| b.address).collect();
    let node = Node::start(&one_frontend("http", 8080, "round_robin", &addresses, "")).await;
    let client = client();
    let mut answered: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        let (status, backend, body) = get(
            &client,
            &node.url(8080, "/hello"),
            &[
                ("connection", "keep-alive, x-private"),
                ("x-private", "secret"),
                ("x-forwarded-for", "10.9.9.9"),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            body.starts_with(&backend),
            "the body names the answering backend: {body}"
        );
        *answered.entry(backend).or_default() += 1;
    }
    assert_eq!(answered.get("a"), Some(&10), "{answered:?}");
    assert_eq!(answered.get("b"), Some(&10), "{answered:?}");
    assert_eq!(answered.get("c"), Some(&10), "{answered:?}");

    let seen = &backends[0].requests()[0];
    assert_eq!(seen.path, "/hello");
    let header = |name: &str| {
        seen.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(
        header("x-forwarded-for"),
        Some("10.9.9.9, 127.0.0.1".to_string())
    );
    assert_eq!(header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        header("x-forwarded-host"),
        Some(format!("{}:8080", node.ip))
    );
    assert_eq!(
        header("x-private"),
        None,
        "a header named in Connection must not be forwarded"
    );
    assert_eq!(header("connection"), None);

    let status = node.status();
    assert_eq!(status["config_version"], 1);
    assert_eq!(status["backends"].as_array().map(Vec::len), Some(3));
    let requests = node.metric("raftlb_frontend_requests_total{frontend=\"front\"}");
    assert_eq!(requests, Some(30.0));
    let two_xx = node.metric("raftlb_frontend_responses_total{frontend=\"front\",class=\"2xx\"}");
    assert_eq!(two_xx, Some(30.0));
}
}

on_both_paths! {
#[tokio::test]
async fn routes_by_host_and_path_prefix() {
    let ip = unique_ip();
    let web = HttpBackend::start("web", ip).await;
    let api = HttpBackend::start("api", ip).await;
    let assets = HttpBackend::start("assets", ip).await;
    let text = format!(
        r#"
[[frontend]]
name = "front"
port = 8080
protocol = "http"
pool = "web"
  [[frontend.route]]
  host = "api.example.com"
  path_prefix = "/v1/"
  pool = "api"
  [[frontend.route]]
  path_prefix = "/static/"
  pool = "assets"
[[pool]]
name = "web"
  [[pool.backend]]
  address = "{}"
[[pool]]
name = "api"
  [[pool.backend]]
  address = "{}"
[[pool]]
name = "assets"
  [[pool.backend]]
  address = "{}"
"#,
        web.address, api.address, assets.address
    );
    let node = Node::start(&text).await;
    let client = client();
    let cases = [
        ("API.example.com:8080", "/v1/users", "api"),
        ("api.example.com", "/v2/users", "web"),
        ("www.example.com", "/v1/users", "web"),
        ("www.example.com", "/static/app.js", "assets"),
        ("api.example.com", "/static/app.js", "assets"),
    ];
    for (host, path, expected) in cases {
        let (status, backend, _) = get(&client, &node.url(8080, path), &[("host", host)]).await;
        assert_eq!(
            (status, backend.as_str()),
            (StatusCode::OK, expected),
            "{host}{path}"
        );
    }
}
}

on_both_paths! {
#[tokio::test]
async fn maglev_keeps_a_header_key_on_one_backend() {
    let ip = unique_ip();
    let backends = [
        HttpBackend::start("a", ip).await,
        HttpBackend::start("b", ip).await,
        HttpBackend::start("c", ip).await,
    ];
    let addresses: Vec<_> = backends.iter().map(|b| b.address).collect();
    let text = one_frontend("http", 8080, "maglev", &addresses, "").replace(
        "algorithm = \"maglev\"",
        "algorithm = \"maglev\"\nhash_key = \"header:x-user\"",
    );
    let node = Node::start(&text).await;
    let client = client();
    let mut users_per_backend: HashMap<String, usize> = HashMap::new();
    for user in 0..30 {
        let user = format!("user-{user}");
        let (_, first, _) = get(&client, &node.url(8080, "/"), &[("x-user", &user)]).await;
        for _ in 0..3 {
            let (_, again, _) = get(&client, &node.url(8080, "/"), &[("x-user", &user)]).await;
            assert_eq!(again, first, "{user} moved");
        }
        *users_per_backend.entry(first).or_default() += 1;
    }
    assert_eq!(
        users_per_backend.len(),
        3,
        "keys spread over all backends: {users_per_backend:?}"
    );
}
}

on_both_paths! {
#[tokio::test]
async fn a_killed_backend_gets_no_new_requests_and_no_client_request_fails() {
    let ip = unique_ip();
    let backends = [
        HttpBackend::start("a", ip).await,
        HttpBackend::start("b", ip).await,
        HttpBackend::start("c", ip).await,
    ];
    let addresses: Vec<_> = backends.iter().map(|b| b.address).collect();
    let node = Node::start(&one_frontend("http", 8080, "round_robin", &addresses, "")).await;
    let client = client();
    for _ in 0..30 {
        assert_eq!(
            get(&client, &node.url(8080, "/"), &[]).await.0,
            StatusCode::OK
        );
    }
    backends[1].kill().await;
    let served_before_kill = backends[1].count();
    // GETs and POSTs both survive: a refused connect never reached the
    // backend, so even a POST is safe to send elsewhere.
    for i in 0..200 {
        if i % 2 == 0 {
            let (status, backend, body) = get(&client, &node.url(8080, "/"), &[]).await;
            assert_eq!(status, StatusCode::OK, "request {i}: {body}");
            assert_ne!(backend, "b");
        } else {
            let request = Request::post(node.url(8080, "/form"))
                .body(Full::new(Bytes::from_static(b"field=1")))
                .expect("request");
            let response = client.request(request).await.expect("response");
            assert_eq!(response.status(), StatusCode::OK, "request {i}");
        }
    }
    assert_eq!(backends[1].count(), served_before_kill);
    let posts: Vec<_> = [&backends[0], &backends[2]]
        .iter()
        .flat_map(|b| b.requests())
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 100, "every POST arrived exactly once");
    assert!(
        posts.iter().all(|r| r.body_bytes == 7),
        "POST bodies arrived whole"
    );
    let failures = node
        .metric(&format!(
            "raftlb_backend_failures_total{{pool=\"pool\",backend=\"{}\"}}",
            backends[1].address
        ))
        .expect("failure metric");
    // One failure ejects it; only after the back-off is it tried again.
    assert!(
        (1.0..=3.0).contains(&failures),
        "{failures} attempts reached the dead backend"
    );
    let status = node.status();
    let dead = status["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .find(|b| b["address"] == backends[1].address.to_string())
        .expect("dead backend in status")
        .clone();
    assert_eq!(dead["ejected"], true, "{dead}");
}
}

on_both_paths! {
#[tokio::test]
async fn no_backend_gives_503_and_slow_backend_gives_504() {
    let ip = unique_ip();
    let slow = HttpBackend::start_slow(ip, Duration::from_secs(3)).await;
    let text = format!(
        "{}\n[[pool]]\nname = \"empty\"\n\n[[frontend]]\nname = \"nothing\"\nport = 8081\nprotocol = \"http\"\npool = \"empty\"\n",
        one_frontend(
            "http",
            8080,
            "round_robin",
            &[slow.address],
            "response_timeout_ms = 300\nretries = 0"
        )
    );
    let node = Node::start(&text).await;
    let client = client();
    let (status, _, body) = get(&client, &node.url(8081, "/"), &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.starts_with("503 Service Unavailable"), "{body}");
    let (status, _, body) = get(&client, &node.url(8080, "/"), &[]).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
}
}

on_both_paths! {
#[tokio::test]
async fn backend_connections_are_kept_alive_and_shared_by_clients() {
    let (backend, node) = HttpBackend::behind_one_node("a").await;
    let traffic_connections = || {
        backend
            .requests()
            .iter()
            .filter(|r| r.path != "/healthz")
            .map(|r| r.peer)
            .collect::<std::collections::HashSet<_>>()
    };
    // Clients one after another, each on a connection of its own, as with
    // nginx's upstream keepalive: one backend connection serves them all.
    for i in 0..20 {
        let (status, _, body) = get(&client(), &node.url(8080, "/one-by-one"), &[]).await;
        assert_eq!(status, StatusCode::OK, "request {i}: {body}");
    }
    let sequential = traffic_connections();
    assert_eq!(sequential.len(), 1, "backend connections: {sequential:?}");

    // Eight clients at once: no more backend connections than requests in
    // flight, and nothing lost.
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let url = node.url(8080, "/together");
        clients.spawn(async move {
            let client = client();
            for _ in 0..10 {
                let (status, _, _) = get(&client, &url, &[]).await;
                assert_eq!(status, StatusCode::OK);
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.expect("client");
    }
    let answered = backend
        .requests()
        .iter()
        .filter(|r| r.path == "/together")
        .count();
    assert_eq!(answered, 80);
    let all = traffic_connections();
    assert!(all.len() <= 8, "backend connections: {}", all.len());
}
}

/// A raw HTTP backend: `/stall` sends its head and 10 of 1,000 body bytes,
/// then nothing; `/big` streams 64 MiB; other paths answer `ok` and keep
/// the connection. Counts the connections it accepted, and those open.
async fn raw_backend(ip: std::net::IpAddr) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let (address, accepted, _) = raw_backend_counting(ip).await;
    (address, accepted)
}

async fn raw_backend_counting(
    ip: std::net::IpAddr,
) -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
    let address = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (count, open_count) = (accepted.clone(), open.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            open_count.fetch_add(1, Ordering::Relaxed);
            let open_count = open_count.clone();
            tokio::spawn(async move {
                /// Counts the connection closed however the task ends.
                struct Closed(Arc<AtomicUsize>);
                impl Drop for Closed {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                let _closed = Closed(open_count);
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                loop {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match tokio::time::timeout_at(deadline, stream.read(&mut byte)).await {
                            Ok(Ok(1)) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    if head.starts_with("GET /stall") {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
                            .await;
                        // Hold the connection until the balancer drops it.
                        let _ = tokio::time::timeout_at(deadline, stream.read(&mut byte)).await;
                        return;
                    }
                    if head.starts_with("GET /big") {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n")
                            .await;
                        let chunk = vec![b'x'; 64 * 1024];
                        for _ in 0..1024 {
                            let write = tokio::time::timeout_at(deadline, stream.write_all(&chunk));
                            if !matches!(write.await, Ok(Ok(()))) {
                                return;
                            }
                        }
                        continue;
                    }
                    if stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (address, accepted, open)
}

on_both_paths! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_backend_and_a_client_that_stops_reading_are_cut_at_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ip = unique_ip();
    let (backend, accepted) = raw_backend(ip).await;
    let node = Node::start(&one_frontend(
        "http",
        8080,
        "round_robin",
        &[backend],
        "idle_timeout_ms = 300",
    ))
    .await;
    let timeouts = |side: &str| {
        node.metric(&format!(
            "raftlb_frontend_idle_timeouts_total{{frontend=\"front\",side=\"{side}\"}}"
        ))
        .unwrap_or(0.0)
    };

    // The backend sends 10 of 1,000 bytes and stops: cut after ~300 ms.
    let mut stalled = tokio::net::TcpStream::connect(node.frontend(8080))
        .await
        .expect("connect");
    stalled
        .write_all(b"GET /stall HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("request");
    let started = std::time::Instant::now();
    let mut received = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut received))
        .await
        .is_ok();
    assert!(closed, "a stalled response was never cut");
    let took = started.elapsed();
    assert!(
        received.ends_with(b"0123456789"),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    assert!(
        took >= Duration::from_millis(250),
        "cut too early: {took:?}"
    );
    assert!(
        wait_until(Duration::from_secs(2), || timeouts("server") == 1.0).await,
        "not counted as a server-side timeout"
    );

    // A client that reads the head and then nothing of 64 MiB: cut too.
    let mut slow = tokio::net::TcpStream::connect(node.frontend(8080))
        .await
        .expect("connect");
    slow.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("request");
    let mut head = [0u8; 64];
    let n = slow.read(&mut head).await.expect("head");
    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &head[..n]);
    assert!(
        wait_until(Duration::from_secs(10), || timeouts("client") == 1.0).await,
        "a client that stopped reading was never cut"
    );
    drop(slow);

    // Neither cut connection went back to the pool: the next request
    // opens a third backend connection.
    let (status, _, body) = get(&client(), &node.url(8080, "/ok"), &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    assert_eq!(accepted.load(Ordering::Relaxed), 3);
    assert!(node.log().contains("http exchange cut"), "not logged");
}
}

on_both_paths! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_backend_closes_its_idle_pooled_connections() {
    let ip = unique_ip();
    let (leaving, _, open) = raw_backend_counting(ip).await;
    let staying = HttpBackend::start("b", ip).await;
    let node = Node::start(&one_frontend(
        "http",
        8080,
        "round_robin",
        &[leaving, staying.address],
        "",
    ))
    .await;
    let client = client();
    for _ in 0..6 {
        let (status, _, _) = get(&client, &node.url(8080, "/ok"), &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert!(
        open.load(Ordering::Relaxed) >= 1,
        "no pooled connection to the backend"
    );
    let (code, _, err) = ctl(
        &node.api(),
        &["backend", "remove", "pool", &leaving.to_string(), "--now"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        wait_until(Duration::from_secs(3), || open.load(Ordering::Relaxed) == 0).await,
        "{} idle connections to a removed backend still open",
        open.load(Ordering::Relaxed)
    );
}
}

on_both_paths! {
#[tokio::test]
async fn a_keep_alive_request_is_routed_by_the_table_of_its_time() {
    // A client that keeps its connection open across a configuration
    // change gets the new routing on its next request.
    let ip = unique_ip();
    let (a, b) = (
        HttpBackend::start("a", ip).await,
        HttpBackend::start("b", ip).await,
    );
    let node = Node::start(&one_frontend("http", 8080, "round_robin", &[a.address], "")).await;
    let mut stream = tokio::net::TcpStream::connect(node.frontend(8080))
        .await
        .expect("connect");
    async fn ask(stream: &mut tokio::net::TcpStream) -> String {
        tokio::io::AsyncWriteExt::write_all(stream, b"GET /which HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        read_responses_open(stream, 1).await
    }
    assert!(ask(&mut stream).await.starts_with('a'));
    node.reload(&one_frontend("http", 8080, "round_robin", &[b.address], ""))
        .await;
    // Once a new connection sees the change, the open one does too.
    let fresh = client();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while get(&fresh, &node.url(8080, "/new"), &[]).await.1 != "b" {
        assert!(std::time::Instant::now() < deadline, "the change never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ask(&mut stream).await.starts_with('b'));
}
}
