//! Live reconfiguration and graceful shutdown.

use std::time::{Duration, Instant};

use hyper::StatusCode;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::fixture::*;

#[tokio::test]
async fn frontends_open_and_close_live_without_cutting_connections() {
    let ip = unique_ip();
    let web = HttpBackend::start("web", ip).await;
    let echo = TcpBackend::start("echo", ip).await;
    let base = one_frontend("http", 8080, "round_robin", &[web.address], "");
    let node = Node::start(&base).await;
    assert!(
        TcpStream::connect(node.frontend(9000)).await.is_err(),
        "port 9000 not yet open"
    );

    let with_tcp = format!(
        "{base}\n[[frontend]]\nname = \"raw\"\nport = 9000\nprotocol = \"tcp\"\npool = \"raw\"\n\
         [[pool]]\nname = \"raw\"\n  [[pool.backend]]\n  address = \"{}\"\n",
        echo.address
    );
    node.reload(&with_tcp).await;
    let opened = wait_until(Duration::from_secs(5), || {
        std::net::TcpStream::connect(node.frontend(9000)).is_ok()
    })
    .await;
    assert!(opened, "added frontend did not open");
    let mut held = BufReader::new(
        TcpStream::connect(node.frontend(9000))
            .await
            .expect("connect"),
    );
    let mut line = String::new();
    held.read_line(&mut line).await.expect("greeting");
    assert_eq!(line, "echo\n");

    node.reload(&base).await;
    let closed = wait_until(Duration::from_secs(5), || {
        std::net::TcpStream::connect(node.frontend(9000)).is_err()
    })
    .await;
    assert!(closed, "removed frontend still listening");
    // The connection opened before the removal still relays.
    held.get_mut()
        .write_all(b"still here\n")
        .await
        .expect("write");
    line.clear();
    held.read_line(&mut line).await.expect("echo");
    assert_eq!(line, "still here\n");
    // And the HTTP frontend was never disturbed.
    assert_eq!(
        get(&client(), &node.url(8080, "/"), &[]).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn draining_and_disabled_backends_get_no_new_requests() {
    let ip = unique_ip();
    let a = HttpBackend::start("a", ip).await;
    let b = HttpBackend::start("b", ip).await;
    let c = HttpBackend::start("c", ip).await;
    let base = one_frontend(
        "http",
        8080,
        "round_robin",
        &[a.address, b.address, c.address],
        "",
    );
    let node = Node::start(&base).await;
    let drained = base
        .replace(
            &format!("address = \"{}\"\n", b.address),
            &format!(
                "address = \"{}\"\n  admin_state = \"draining\"\n",
                b.address
            ),
        )
        .replace(
            &format!("address = \"{}\"\n", c.address),
            &format!(
                "address = \"{}\"\n  admin_state = \"disabled\"\n",
                c.address
            ),
        );
    node.reload(&drained).await;
    let client = client();
    for _ in 0..12 {
        let (status, backend, _) = get(&client, &node.url(8080, "/"), &[]).await;
        assert_eq!((status, backend.as_str()), (StatusCode::OK, "a"));
    }
    // A bad file is refused and the current configuration stays.
    let version = node.status()["config_version"].clone();
    std::fs::write(
        node.dir.join("cluster.toml"),
        base.replace("round_robin", "fastest"),
    )
    .expect("write");
    node.signal("HUP");
    let refused = wait_until(Duration::from_secs(5), || {
        node.log().contains("reload refused")
    })
    .await;
    assert!(refused, "bad reload not reported");
    assert_eq!(node.status()["config_version"], version);
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let ip = unique_ip();
    let slow = HttpBackend::start_slow(ip, Duration::from_millis(800)).await;
    let mut node = Node::start(&one_frontend(
        "http",
        8080,
        "round_robin",
        &[slow.address],
        "",
    ))
    .await;
    let url = node.url(8080, "/slow");
    let in_flight = tokio::spawn(async move { get(&client(), &url, &[]).await });
    let arrived = wait_until(Duration::from_secs(5), || slow.count() == 1).await;
    assert!(arrived, "request did not reach the backend");
    let started = Instant::now();
    node.signal("TERM");
    let refused = wait_until(Duration::from_secs(5), || {
        std::net::TcpStream::connect(node.frontend(8080)).is_err()
    })
    .await;
    assert!(refused, "still accepting after SIGTERM");
    let (status, backend, _) = in_flight.await.expect("request task");
    assert_eq!((status, backend.as_str()), (StatusCode::OK, "slow"));
    let code = node.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0), "exit status");
    println!(
        "shutdown with one request in flight took {:?}",
        started.elapsed()
    );
    assert!(node.log().contains("SIGTERM received"));
}
