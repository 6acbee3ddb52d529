//! Requests per second and latency through raftlb against a direct
//! connection to the same backend, on loopback, in one run.
//!
//! `cargo bench --bench proxy` (options after `--`: `--connections N`,
//! `--requests N`, `--rounds N`). Each round measures direct, then through
//! raftlb; the table shows medians over the rounds and the ratio to direct.
//! Load is bounded in count and in time (60 s per measurement at most).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(60);

struct Options {
    connections: usize,
    requests: usize,
    rounds: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Options {
        connections: value("--connections", 32),
        requests: value("--requests", 100_000),
        rounds: value("--rounds", 5),
    }
}

struct Measurement {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(options));
}

async fn run(options: Options) {
    let backend = start_backend().await;
    let dir = std::env::temp_dir().join(format!("raftlb-bench-{}", std::process::id()));
    let mut node = start_node(&dir, backend).await;
    let proxy: SocketAddr = "127.0.0.91:8080".parse().expect("address");
    let mut direct = Vec::new();
    let mut proxied = Vec::new();
    for round in 1..=options.rounds {
        direct.push(load(backend, &options).await);
        proxied.push(load(proxy, &options).await);
        eprintln!("round {round}/{} done", options.rounds);
    }
    let _ = node.kill();
    let _ = node.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let median = |values: &mut Vec<f64>| {
        values.sort_by(|a, b| a.total_cmp(b));
        values[values.len() / 2]
    };
    let summary = |ms: &[Measurement]| {
        let mut rps: Vec<f64> = ms.iter().map(|m| m.rps).collect();
        let mut p50: Vec<f64> = ms.iter().map(|m| m.p50_us).collect();
        let mut p99: Vec<f64> = ms.iter().map(|m| m.p99_us).collect();
        (median(&mut rps), median(&mut p50), median(&mut p99))
    };
    let (d_rps, d_p50, d_p99) = summary(&direct);
    let (p_rps, p_p50, p_p99) = summary(&proxied);
    println!(
        "\nkeep-alive GET, {} connections, {} requests per measurement, medians of {} rounds\n",
        options.connections, options.requests, options.rounds
    );
    println!("| path        | requests/s | ratio | p50 µs | p99 µs |");
    println!("|-------------|-----------:|------:|-------:|-------:|");
    println!("| direct      | {d_rps:>10.0} | 1.00  | {d_p50:>6.0} | {d_p99:>6.0} |");
    println!(
        "| via raftlb  | {p_rps:>10.0} | {:.2}  | {p_p50:>6.0} | {p_p99:>6.0} |",
        p_rps / d_rps
    );
}

/// Runs `options.requests` GETs over `options.connections` keep-alive
/// connections to `target`.
async fn load(target: SocketAddr, options: &Options) -> Measurement {
    let per_connection = options.requests / options.connections;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..options.connections {
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(target).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .expect("handshake");
            tokio::spawn(connection);
            let mut latencies = Vec::with_capacity(per_connection);
            for _ in 0..per_connection {
                if started.elapsed() > LIMIT {
                    break;
                }
                let request = Request::get("/")
                    .header("host", "bench")
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let sent = Instant::now();
                let response = sender.send_request(request).await.expect("response");
                assert!(response.status().is_success());
                let _ = response.into_body().collect().await.expect("body");
                latencies.push(sent.elapsed().as_micros() as u32);
            }
            latencies
        }));
    }
    let mut all = Vec::with_capacity(options.requests);
    for task in tasks {
        all.extend(task.await.expect("load task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let at = |q: f64| f64::from(all[((all.len() as f64 * q) as usize).min(all.len() - 1)]);
    Measurement {
        rps: all.len() as f64 / elapsed,
        p50_us: at(0.50),
        p99_us: at(0.99),
    }
}

/// A backend answering every request with a 3-byte body, on its own thread.
async fn start_backend() -> SocketAddr {
    let std_listener = std::net::TcpListener::bind("127.0.0.90:0").expect("bind backend");
    let address = std_listener.local_addr().expect("address");
    std_listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("backend runtime");
        runtime.block_on(async move {
            let listener = TcpListener::from_std(std_listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    address
}

/// Starts `raftlb node` with one HTTP frontend on 127.0.0.91:8080 over
/// `backend` and waits for it to be ready.
async fn start_node(dir: &std::path::Path, backend: SocketAddr) -> Child {
    std::fs::create_dir_all(dir).expect("bench dir");
    std::fs::write(
        dir.join("node.toml"),
        "id = 1\nraft_addr = \"127.0.0.91:7100\"\napi_addr = \"127.0.0.91:7200\"\n\
         admin_addr = \"127.0.0.91:7300\"\nserve_ip = \"127.0.0.91\"\ndata_dir = \"data\"\n\
         [cluster]\nmembers = { 1 = \"127.0.0.91:7100\" }\nseed = \"cluster.toml\"\n",
    )
    .expect("node.toml");
    std::fs::write(
        dir.join("cluster.toml"),
        format!(
            "[[frontend]]\nname = \"web\"\nport = 8080\nprotocol = \"http\"\npool = \"web\"\n\
             [[pool]]\nname = \"web\"\n  [[pool.backend]]\n  address = \"{backend}\"\n"
        ),
    )
    .expect("cluster.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_raftlb"))
        .args(["node", "--config"])
        .arg(dir.join("node.toml"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn raftlb");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect("127.0.0.91:8080").await.is_ok() {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("raftlb did not start");
}
