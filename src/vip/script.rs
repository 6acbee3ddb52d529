//! `script` mode: operator commands run on acquire and release, like
//! keepalived's `notify_master` / `notify_backup` (move a cloud elastic IP,
//! update a DNS record, call a router's API…). Each runs under `/bin/sh -c`
//! with a timeout, and its outcome is logged.

use std::net::IpAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The two commands and how long they may take.
pub struct ScriptHooks {
    /// Run on acquiring.
    pub on_acquire: String,
    /// Run on releasing.
    pub on_release: String,
    /// A command still running after this is killed and counted as failed.
    pub timeout: Duration,
    /// This node's id, passed as `RAFTLB_NODE_ID`.
    pub node_id: u64,
}

impl ScriptHooks {
    /// Runs the command for `event` (`acquire` or `release`) and logs how it
    /// went; whether it exited 0 in time.
    pub async fn run(&self, event: &'static str, vip: IpAddr) -> bool {
        let command = if event == "acquire" {
            &self.on_acquire
        } else {
            &self.on_release
        };
        let started = Instant::now();
        let child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .env("RAFTLB_VIP", vip.to_string())
            .env("RAFTLB_EVENT", event)
            .env("RAFTLB_NODE_ID", self.node_id.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(error) => {
                tracing::error!(event, command, %error, "VIP script could not start");
                return false;
            }
        };
        let elapsed_ms = || started.elapsed().as_millis() as u64;
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(output)) if output.status.success() => {
                tracing::info!(
                    event,
                    command,
                    elapsed_ms = elapsed_ms(),
                    "VIP script succeeded"
                );
                true
            }
            Ok(Ok(output)) => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                tracing::error!(
                    event,
                    command,
                    status = %output.status,
                    elapsed_ms = elapsed_ms(),
                    stderr = %stderr.trim(),
                    "VIP script failed"
                );
                false
            }
            Ok(Err(error)) => {
                tracing::error!(event, command, %error, "VIP script failed");
                false
            }
            Err(_) => {
                // Dropping the future kills the child (kill_on_drop).
                tracing::error!(
                    event,
                    command,
                    timeout_ms = self.timeout.as_millis() as u64,
                    "VIP script timed out and was killed"
                );
                false
            }
        }
    }
}
