//! Test fixtures: real `raftlb` processes, real backends, unique loopback
//! addresses so tests run in parallel.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A loopback address no other test in this run uses.
pub fn unique_ip() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let second = 20 + (std::process::id() % 200) as u8;
    IpAddr::V4(Ipv4Addr::new(
        127,
        second,
        (n / 250) as u8,
        (n % 250) as u8 + 2,
    ))
}

/// Polls `check` every 20 ms until it is true or `within` passes.
pub async fn wait_until(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// How a test HTTP backend answers.
#[derive(Clone, Default)]
pub struct BackendBehaviour {
    /// Delay before answering.
    pub delay: Duration,
    /// Status of answers to real traffic (0: 200).
    pub status: u16,
    /// Answers to `/healthz` (200 when healthy for the asking address, else
    /// 503); health probes are not counted as traffic.
    pub health: Option<Arc<HealthSwitch>>,
}

/// What a test backend's `/healthz` says, per asking node address.
#[derive(Default)]
pub struct HealthSwitch {
    pub unhealthy: AtomicBool,
    pub failing_for: Mutex<Vec<IpAddr>>,
}

impl HealthSwitch {
    fn healthy_for(&self, peer: IpAddr) -> bool {
        !self.unhealthy.load(Ordering::Relaxed)
            && !self.failing_for.lock().expect("switch").contains(&peer)
    }
}

/// What a test HTTP backend saw of one request.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub headers: hyper::HeaderMap,
    pub body_bytes: u64,
}

/// An HTTP backend that names itself in every answer (`x-backend` header
/// and body), consumes request bodies in a stream and reports their size,
/// and records what it saw.
pub struct HttpBackend {
    pub address: SocketAddr,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    stop: CancellationToken,
    connections: TaskTracker,
}

impl HttpBackend {
    pub async fn start(name: &str, ip: IpAddr) -> HttpBackend {
        Self::start_with(name, ip, BackendBehaviour::default()).await
    }

    pub async fn start_with(name: &str, ip: IpAddr, behaviour: BackendBehaviour) -> HttpBackend {
        Self::start_at(name, SocketAddr::new(ip, 0), behaviour).await
    }

    /// Starts on a given address (to bring a killed backend back).
    pub async fn start_at(
        name: &str,
        address: SocketAddr,
        behaviour: BackendBehaviour,
    ) -> HttpBackend {
        let listener = TcpListener::bind(address).await.expect("bind backend");
        let address = listener.local_addr().expect("backend address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let connections = TaskTracker::new();
        let name_owned = name.to_string();
        {
            let (seen, stop, connections) = (seen.clone(), stop.clone(), connections.clone());
            tokio::spawn(async move {
                loop {
                    let stream = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok(pair) => pair,
                            Err(_) => continue,
                        },
                        () = stop.cancelled() => return, // drops the listener: connects are refused
                    };
                    let (stream, peer) = stream;
                    let (seen, name, behaviour, stop) = (
                        seen.clone(),
                        name_owned.clone(),
                        behaviour.clone(),
                        stop.clone(),
                    );
                    connections.spawn(async move {
                        let service = service_fn(move |request: Request<Incoming>| {
                            let (seen, name, behaviour) =
                                (seen.clone(), name.clone(), behaviour.clone());
                            async move {
                                Ok::<_, Infallible>(
                                    answer(request, &name, &behaviour, &seen, peer.ip()).await,
                                )
                            }
                        });
                        let connection =
                            http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                        tokio::select! {
                            _ = connection => {}
                            () = stop.cancelled() => {} // drops the connection: like a killed process
                        }
                    });
                }
            });
        }
        HttpBackend {
            address,
            seen,
            stop,
            connections,
        }
    }

    /// Stops like a killed process: the port refuses connects and open
    /// connections are reset.
    pub async fn kill(&self) {
        self.stop.cancel();
        self.connections.close();
        self.connections.wait().await;
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().expect("seen").clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().expect("seen").len()
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn answer(
    request: Request<Incoming>,
    name: &str,
    behaviour: &BackendBehaviour,
    seen: &Mutex<Vec<SeenRequest>>,
    peer: IpAddr,
) -> Response<Full<Bytes>> {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    if path == "/healthz"
        && let Some(switch) = &behaviour.health
    {
        let mut response = Response::new(Full::new(Bytes::from_static(b"health\n")));
        if !switch.healthy_for(peer) {
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        return response;
    }
    let headers = request.headers().clone();
    let mut body = request.into_body();
    let mut body_bytes = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => body_bytes += frame.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => break,
        }
    }
    seen.lock().expect("seen").push(SeenRequest {
        method: method.clone(),
        path: path.clone(),
        headers,
        body_bytes,
    });
    if !behaviour.delay.is_zero() {
        tokio::time::sleep(behaviour.delay).await;
    }
    let mut response = Response::new(Full::new(Bytes::from(format!(
        "{name} {method} {path} {body_bytes}\n"
    ))));
    response
        .headers_mut()
        .insert("x-backend", name.parse().expect("header value"));
    response
        .headers_mut()
        .insert("keep-alive", "timeout=5".parse().expect("header value"));
    if behaviour.status != 0 {
        *response.status_mut() = StatusCode::from_u16(behaviour.status).expect("status");
    }
    response
}

/// A TCP backend: greets with its name and a newline, then echoes until
/// the client half-closes, then writes `bytes N` and closes.
pub struct TcpBackend {
    pub address: SocketAddr,
    stop: CancellationToken,
}

impl TcpBackend {
    pub async fn start(name: &str, ip: IpAddr) -> TcpBackend {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind tcp backend");
        let address = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        let name = name.to_string();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let mut stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                    () = token.cancelled() => return,
                };
                let greeting = format!("{name}\n");
                tokio::spawn(async move {
                    if stream.write_all(greeting.as_bytes()).await.is_err() {
                        return;
                    }
                    let mut total = 0u64;
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                total += n as u64;
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = stream
                        .write_all(format!("bytes {total}\n").as_bytes())
                        .await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        TcpBackend { address, stop }
    }
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A `raftlb node` process with its own folder, config and log. The folder
/// (and the node's data) outlives restarts of the process.
pub struct Node {
    pub id: u64,
    pub ip: IpAddr,
    pub admin: SocketAddr,
    pub dir: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    runs: u32,
}

static DIRS: AtomicU64 = AtomicU64::new(0);

/// Extra `node.toml` lines for test clusters: fast snapshots when asked.
#[derive(Clone, Default)]
pub struct NodeOptions {
    /// `[raft]` lines.
    pub raft: String,
    /// A cluster token, written to a 0600 token file.
    pub token: Option<String>,
    /// A VIP held in `bind` mode.
    pub vip: Option<IpAddr>,
}

impl Node {
    /// Starts a single-node cluster serving `cluster_toml` and waits until
    /// it is ready.
    pub async fn start(cluster_toml: &str) -> Node {
        let ip = unique_ip();
        let mut node = Node::create(1, ip, &[(1, ip)], cluster_toml, &NodeOptions::default());
        node.launch();
        node.wait_ready().await;
        node
    }

    /// Writes the node's folder and config; does not start it.
    pub fn create(
        id: u64,
        ip: IpAddr,
        members: &[(u64, IpAddr)],
        cluster_toml: &str,
        options: &NodeOptions,
    ) -> Node {
        let dir = std::env::temp_dir().join(format!(
            "raftlb-test-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test dir");
        let admin = SocketAddr::new(ip, 7300);
        let members: Vec<String> = members
            .iter()
            .map(|(id, ip)| format!("{id} = \"{ip}:7100\""))
            .collect();
        let node_toml = format!(
            r#"id = {id}
raft_addr  = "{ip}:7100"
api_addr   = "{ip}:7200"
admin_addr = "{admin}"
serve_ip   = "{ip}"
data_dir   = "data"
shutdown_grace_ms = 5000

[cluster]
members = {{ {} }}
seed    = "cluster.toml"

[raft]
{}

[vip]
{}
"#,
            members.join(", "),
            options.raft,
            match options.vip {
                Some(vip) => format!("mode = \"bind\"\naddress = \"{vip}\""),
                None => "mode = \"none\"".to_string(),
            }
        );
        let node_toml = match &options.token {
            Some(token) => {
                use std::os::unix::fs::PermissionsExt;
                let path = dir.join("token");
                std::fs::write(&path, token).expect("token file");
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod");
                format!("token_file = \"token\"\n{node_toml}")
            }
            None => node_toml,
        };
        std::fs::write(dir.join("node.toml"), node_toml).expect("node.toml");
        std::fs::write(dir.join("cluster.toml"), cluster_toml).expect("cluster.toml");
        Node {
            id,
            ip,
            admin,
            log: dir.join("node.log"),
            dir,
            child: None,
            runs: 0,
        }
    }

    /// Starts (or restarts) the process; appends to the same log.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        self.runs += 1;
        let mut log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let _ = writeln!(log_file, "===== run {} =====", self.runs);
        let child = Command::new(env!("CARGO_BIN_EXE_raftlb"))
            .args(["node", "--config"])
            .arg(self.dir.join("node.toml"))
            .env("RUST_LOG", "info,raftlb=debug,openraft=off")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn raftlb");
        self.child = Some(child);
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let ready = wait_until(Duration::from_secs(30), || {
            self.admin_get("/readyz")
                .is_some_and(|(status, _)| status == 200)
        })
        .await;
        if !ready {
            self.dump_log();
            panic!("node {} did not become ready", self.id);
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The control API address.
    pub fn api(&self) -> String {
        format!("{}:7200", self.ip)
    }

    /// `http://ip:port` of a frontend port.
    pub fn url(&self, port: u16, path: &str) -> String {
        format!("http://{}:{port}{path}", self.ip)
    }

    pub fn frontend(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip, port)
    }

    /// A blocking GET on the admin endpoint: status and body.
    pub fn admin_get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream =
            TcpStream::connect_timeout(&self.admin, Duration::from_millis(500)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_string();
        Some((status, body))
    }

    /// `/status` parsed, if the node answers.
    pub fn try_status(&self) -> Option<serde_json::Value> {
        let (_, body) = self.admin_get("/status")?;
        serde_json::from_str(&body).ok()
    }

    /// `/status` parsed.
    pub fn status(&self) -> serde_json::Value {
        self.try_status().expect("status")
    }

    /// The configuration version the node serves, if it answers.
    pub fn config_version(&self) -> Option<u64> {
        self.try_status()?["config_version"].as_u64()
    }

    /// The value of one metric series, e.g. `raftlb_backend_failures_total{pool="web",backend="…"}`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.admin_get("/metrics")?;
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    }

    /// Replaces cluster.toml and sends SIGHUP; waits for the new version.
    pub async fn reload(&self, cluster_toml: &str) {
        let before = self.status()["config_version"].as_u64().expect("version");
        std::fs::write(self.dir.join("cluster.toml"), cluster_toml).expect("cluster.toml");
        self.signal("HUP");
        let reloaded = wait_until(Duration::from_secs(10), || {
            self.status()["config_version"].as_u64() > Some(before)
        })
        .await;
        if !reloaded {
            self.dump_log();
            panic!("reload not applied");
        }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .expect("child")
                .try_wait()
                .expect("wait")
            {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A field of /proc/PID/status in kB, e.g. `VmRSS` or `VmHWM`.
    pub fn memory_kb(&self, field: &str) -> u64 {
        let text =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .expect("memory field")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn dump_log(&self) {
        eprintln!(
            "----- node {} log ({}) -----\n{}\n-----",
            self.id,
            self.log.display(),
            self.log()
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_log();
        }
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Several nodes forming one cluster, ids 1..=n.
pub struct Cluster {
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Creates `n` nodes with the same members and seed; starts none.
    pub fn create(n: u64, cluster_toml: &str, options: &NodeOptions) -> Cluster {
        let ips: Vec<(u64, IpAddr)> = (1..=n).map(|id| (id, unique_ip())).collect();
        let nodes = ips
            .iter()
            .map(|&(id, ip)| Node::create(id, ip, &ips, cluster_toml, options))
            .collect();
        Cluster { nodes }
    }

    /// Creates and starts `n` nodes and waits until all are ready.
    pub async fn start(n: u64, cluster_toml: &str) -> Cluster {
        Self::start_with(n, cluster_toml, &NodeOptions::default()).await
    }

    /// As [`Cluster::start`], with extra node settings.
    pub async fn start_with(n: u64, cluster_toml: &str, options: &NodeOptions) -> Cluster {
        let mut cluster = Cluster::create(n, cluster_toml, options);
        for node in &mut cluster.nodes {
            node.launch();
        }
        for node in &cluster.nodes {
            node.wait_ready().await;
        }
        cluster
    }

    /// Index (in `nodes`) of the leader that the running nodes agree on.
    pub fn leader(&self) -> Option<usize> {
        let mut leader = None;
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let status = node.try_status()?;
            let id = status["leader"].as_u64()?;
            if leader.is_some_and(|l| l != id) {
                return None;
            }
            leader = Some(id);
        }
        let id = leader?;
        let index = self.nodes.iter().position(|n| n.id == id)?;
        self.nodes[index].is_running().then_some(index)
    }

    /// Waits for an agreed leader.
    pub async fn wait_leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(index) = self.leader() {
                return index;
            }
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("no agreed leader");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Comma-separated API endpoints of the running nodes.
    pub fn endpoints(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(Node::api)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn dump_logs(&self) {
        for node in &self.nodes {
            node.dump_log();
        }
    }
}

/// Runs `raftlb ctl` with `args`; exit code, stdout, stderr.
pub fn ctl(endpoints: &str, args: &[&str]) -> (i32, String, String) {
    run_ctl(endpoints, args, None)
}

fn run_ctl(endpoints: &str, args: &[&str], token: Option<&str>) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_raftlb"));
    command
        .args(["ctl", "--endpoint", endpoints])
        .args(args)
        .env_remove("RAFTLB_TOKEN")
        .stdin(Stdio::null());
    if let Some(token) = token {
        command.env("RAFTLB_TOKEN", token);
    }
    let output = command.output().expect("run raftlb ctl");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A keep-alive HTTP client for tests.
pub fn client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new())
}

/// A GET through `client`: status, `x-backend` and body.
pub async fn get(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    url: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let mut builder = Request::get(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Full::new(Bytes::new())).expect("request");
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .expect("response in time")
        .expect("response");
    let status = response.status();
    let backend = response
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, backend, String::from_utf8_lossy(&body).into_owned())
}

/// Sends raw bytes on a new connection and reads until the server closes
/// it (or 5 s pass): what came back, and whether the server closed.
pub async fn raw_exchange(address: SocketAddr, request: &[u8]) -> (String, bool) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

/// A cluster.toml with one frontend over the given backends.
pub fn one_frontend(
    protocol: &str,
    port: u16,
    algorithm: &str,
    backends: &[SocketAddr],
    extra: &str,
) -> String {
    let mut text = format!(
        "[[frontend]]\nname = \"front\"\nport = {port}\nprotocol = \"{protocol}\"\npool = \"pool\"\n{extra}\n\n\
         [[pool]]\nname = \"pool\"\nalgorithm = \"{algorithm}\"\n"
    );
    for backend in backends {
        text.push_str(&format!("  [[pool.backend]]\n  address = \"{backend}\"\n"));
    }
    text
}

/// Applies `spec` through the control API of the first endpoint that
/// answers; the new version, or the last error.
pub async fn apply_spec(
    endpoints: &[String],
    spec: &raftlb::config::ClusterSpec,
) -> Result<u64, String> {
    use raftlb::proto::v1 as pb;
    let mut last = String::from("no endpoint");
    for endpoint in endpoints {
        let connect = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
            .expect("endpoint")
            .connect_timeout(Duration::from_millis(300))
            .timeout(Duration::from_secs(8));
        let channel = match connect.connect().await {
            Ok(channel) => channel,
            Err(error) => {
                last = format!("{endpoint}: {error}");
                continue;
            }
        };
        let mut client = pb::control_service_client::ControlServiceClient::new(channel);
        let request = pb::ApplyConfigRequest {
            config: Some(raftlb::api::convert::to_proto(spec)),
            if_version: None,
            dry_run: false,
        };
        match client.apply_config(request).await {
            Ok(reply) => return Ok(reply.into_inner().version),
            Err(status) => last = format!("{endpoint}: {status}"),
        }
    }
    Err(last)
}

/// The configuration version a node's admin endpoint reports, if it answers.
pub fn version_at(admin: SocketAddr) -> Option<u64> {
    let mut stream = TcpStream::connect_timeout(&admin, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    serde_json::from_str::<serde_json::Value>(body).ok()?["config_version"].as_u64()
}

/// Runs `raftlb ctl` with `args` and a token in `RAFTLB_TOKEN`.
pub fn ctl_with_token(endpoints: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    run_ctl(endpoints, args, Some(token))
}

/// Counts which backend answered `n` GETs through `node`'s frontend 8080.
pub async fn answers(node: &Node, n: usize) -> std::collections::HashMap<String, usize> {
    let client = client();
    let mut counts = std::collections::HashMap::new();
    for _ in 0..n {
        let (status, backend, body) = get(&client, &node.url(8080, "/"), &[]).await;
        assert_eq!(status, StatusCode::OK, "node {}: {body}", node.id);
        *counts.entry(backend).or_insert(0) += 1;
    }
    counts
}

/// [`ctl`] on a blocking thread, so backends served by the test's own
/// runtime keep answering while it runs.
pub async fn ctl_async(endpoints: String, args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ctl(&endpoints, &args)
    })
    .await
    .expect("ctl task")
}
