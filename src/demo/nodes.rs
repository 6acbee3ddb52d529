//! The demo's `raftlb node` child processes, and the one HTTP GET the demo
//! needs to ask them things.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// How long a node may take to become ready.
const READY_WAIT: Duration = Duration::from_secs(20);

/// One `raftlb node --config …` child.
pub struct NodeProcess {
    /// Node id.
    pub id: u64,
    config: PathBuf,
    /// Its admin HTTP address.
    pub admin: SocketAddr,
    child: Option<Child>,
}

impl NodeProcess {
    /// Starts the node; its output goes to `nodeN.log` beside its config.
    pub fn spawn(id: u64, config: PathBuf, admin: SocketAddr) -> std::io::Result<Self> {
        let mut node = NodeProcess {
            id,
            config,
            admin,
            child: None,
        };
        node.start()?;
        Ok(node)
    }

    /// (Re)starts the process.
    pub fn start(&mut self) -> std::io::Result<()> {
        let log_path = self.config.with_extension("log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("node")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to
        // send SIGTERM to the child if the demo dies first.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        self.child = Some(command.spawn()?);
        Ok(())
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + READY_WAIT;
        while Instant::now() < deadline {
            if let Some((200, _)) = get(self.admin, "/readyz").await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "node {} not ready after {READY_WAIT:?}; see {}",
            self.id,
            self.config.with_extension("log").display()
        ))
    }

    /// Whether the node says it holds the VIP.
    pub async fn holds_vip(&self) -> bool {
        let Some((200, body)) = get(self.admin, "/status").await else {
            return false;
        };
        serde_json::from_str::<serde_json::Value>(&body)
            .is_ok_and(|status| status["vip"]["held"] == true)
    }

    /// SIGKILL, as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM: the node hands over and drains.
    pub fn terminate(&mut self) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            // SAFETY: signalling our own child by its PID.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }

    /// Waits for the process to exit (killing it after 10 s).
    pub async fn wait_exit(&mut self) {
        if let Some(mut child) = self.child.take()
            && tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

/// One GET on a new connection, within 500 ms: status and body.
pub async fn get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    tokio::time::timeout(Duration::from_millis(500), async {
        let stream = TcpStream::connect(address).await.ok()?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(connection);
        let request = Request::get(path)
            .header(hyper::header::HOST, address.to_string())
            .body(Empty::<Bytes>::new())
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    })
    .await
    .ok()
    .flatten()
}
