//! A new user's first hour, on the addresses the docs print (127.0.0.11–13,
//! the VIP 127.0.0.100): `raftlb demo`, whose every "try:" line runs as
//! printed and which a `kill` stops like Ctrl-C (the client file goes, the
//! logs stay); then the walkthrough of `cluster-examples/three-node`, every
//! command block of its README run in order. One test, as both use the
//! same addresses.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::fixture::debian_tool;

/// Lines the demo prints, read on a thread of their own.
fn lines_of(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    receive
}

/// Lines until (and with) one containing `marker`, within `limit`.
fn read_until(lines: &mpsc::Receiver<String>, marker: &str, limit: Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains(marker);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(_) => panic!("no line with {marker:?} within {limit:?}; saw {seen:#?}"),
        }
    }
}

/// Stops the demo (SIGTERM, which stops its nodes too) when the test ends
/// before it does so itself: a failed assertion must not leave the demo
/// holding 127.0.0.11–13 for the next run.
struct DemoGuard(Option<u32>);

impl Drop for DemoGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: signalling the child this test started, by its PID.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
    }
}

#[test]
fn the_demo_and_the_three_node_walkthrough_run_as_printed() {
    the_demos_printed_lines_run_and_a_kill_keeps_its_logs();
    the_three_node_walkthrough_runs_as_printed();
}

fn the_demos_printed_lines_run_and_a_kill_keeps_its_logs() {
    let home = std::env::temp_dir().join(format!("raftlb-demo-test-{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("home");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_raftlb"))
        .arg("demo")
        .env("XDG_CONFIG_HOME", &home)
        .env_remove("RAFTLB_ENDPOINT")
        .env_remove("RAFTLB_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("raftlb demo");
    let mut guard = DemoGuard(Some(demo.id()));
    let lines = lines_of(demo.stdout.take().expect("stdout"));
    let banner = read_until(&lines, "Ctrl-C stops the demo.", Duration::from_secs(90));
    let client_file = home.join("raftlb/ctl.toml");
    assert!(client_file.exists(), "no client file: {banner:#?}");

    // Every command under "try:", as printed (the last, a leadership
    // transfer, too).
    let tries: Vec<&String> = banner
        .iter()
        .skip_while(|l| *l != "try:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| !l.trim_start().starts_with('('))
        .collect();
    assert!(tries.len() >= 5, "{banner:#?}");
    assert!(tries.iter().any(|l| l.contains("https://")), "{banner:#?}");
    for line in tries {
        let output = Command::new("sh")
            .arg("-c")
            .arg(line.trim())
            .env("XDG_CONFIG_HOME", &home)
            .env_remove("RAFTLB_ENDPOINT")
            .stdin(Stdio::null())
            .output()
            .expect("sh");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && !stdout.trim().is_empty(),
            "`{line}` exited {:?}: {stdout}{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        if line.contains("for i in 1 2 3 4") {
            assert_eq!(stdout.matches("demo backend").count(), 4, "{stdout}");
        } else if line.contains("curl") {
            // HTTPS, with the demo's own CA.
            assert!(
                line.contains("https://") && stdout.contains("demo backend"),
                "{line}: {stdout}"
            );
        }
    }

    // SIGTERM, as `kill` sends it.
    guard.0 = None;
    // SAFETY: signalling the child this test started, by its PID.
    unsafe { libc::kill(demo.id() as i32, libc::SIGTERM) };
    let end = read_until(&lines, "are kept in", Duration::from_secs(30));
    let status = demo.wait().expect("wait");
    assert!(status.success(), "the demo exited {status}");
    assert!(!client_file.exists(), "the client file stayed: {end:#?}");
    let last = end.last().expect("a line");
    let kept = last
        .split("are kept in ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .expect("the directory");
    let kept = std::path::Path::new(kept);
    for file in ["node1.log", "node1.toml", "cluster.toml"] {
        assert!(kept.join(file).exists(), "{} lacks {file}", kept.display());
    }
    let _ = std::fs::remove_dir_all(kept);
    let _ = std::fs::remove_dir_all(&home);
}

/// The README's `sh` blocks, in order.
fn sh_blocks(readme: &str) -> Vec<String> {
    readme
        .split("```sh\n")
        .skip(1)
        .map(|rest| rest[..rest.find("```").expect("block end")].to_string())
        .collect()
}

/// Stops what the walkthrough started however the test ends: SIGTERM by
/// the PIDs in `run/` (stop.sh's way), then SIGKILL for what lingers.
struct StopExample(std::path::PathBuf);

impl Drop for StopExample {
    fn drop(&mut self) {
        let pids: Vec<i32> = std::fs::read_dir(self.0.join("run"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".pid"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
            .collect();
        for (signal, wait) in [(libc::SIGTERM, 15_000), (libc::SIGKILL, 0)] {
            for pid in &pids {
                // SAFETY: signalling processes the walkthrough started,
                // by the PIDs it recorded.
                unsafe { libc::kill(*pid, signal) };
            }
            let alive = |pid: &i32| unsafe { libc::kill(*pid, 0) } == 0;
            let deadline = std::time::Instant::now() + Duration::from_millis(wait);
            while pids.iter().any(alive) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn the_three_node_walkthrough_runs_as_printed() {
    for (program, package) in [("curl", "curl"), ("jq", "jq"), ("python3", "python3")] {
        debian_tool(program, package);
    }
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/cluster-examples/three-node");
    // A copy, so the repository keeps no data dir or logs.
    let dir = std::env::temp_dir().join(format!("raftlb-three-node-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("copy dir");
    for entry in std::fs::read_dir(example).expect("example dir").flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
        }
    }
    let stop = StopExample(dir.clone());
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("README.md");
    // The script: every block in order. The build and the PATH lines are
    // the test's own (the debug binary, no `cargo build --release`); the
    // client loop runs in the background, "in a second terminal", and is
    // waited for before the last block stops the cluster.
    let mut script = String::from("set -eux\n");
    let blocks = sh_blocks(&readme);
    assert!(blocks.len() >= 8, "{blocks:#?}");
    for (i, block) in blocks.iter().enumerate() {
        let lines: Vec<&str> = block
            .lines()
            .filter(|l| {
                !(l.starts_with("cargo build")
                    || l.starts_with("cd ")
                    || l.starts_with("export PATH"))
            })
            .collect();
        let block = lines.join("\n");
        if block.contains("./stop.sh") {
            script.push_str("wait \"$loop\"\n");
        }
        if block.contains("| sort | uniq -c") {
            // As typed in a second terminal: without `set -e`.
            script.push_str(&format!(
                "( set +ex; {block} ) > client-loop.txt 2> /dev/null &\nloop=$!\n"
            ));
        } else {
            script.push_str(&format!("# block {i}\n{block}\n"));
        }
    }
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_raftlb"));
    let path = format!(
        "{}:{}",
        bin.parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&dir)
        .env("PATH", path)
        .env("RAFTLB", bin)
        .env_remove("RAFTLB_ENDPOINT")
        .env_remove("RAFTLB_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let logs: String = (1..=3)
        .map(|i| {
            let log = std::fs::read_to_string(dir.join(format!("run/node{i}.log")));
            format!("--- node{i}.log\n{}\n", log.unwrap_or_default())
        })
        .collect();
    assert!(
        output.status.success(),
        "the walkthrough failed ({:?}):\n{stdout}\n{stderr}\n{logs}",
        output.status.code()
    );
    // What the walkthrough says a user sees.
    assert!(stdout.contains("held by node"), "{stdout}");
    assert!(
        stdout.contains("backend 9001") && stdout.contains("backend 9002"),
        "{stdout}"
    );
    let client_loop = std::fs::read_to_string(dir.join("client-loop.txt")).expect("client loop");
    let ok: u32 = client_loop
        .lines()
        .filter_map(|l| l.trim().strip_suffix(" 200")?.trim().parse::<u32>().ok())
        .sum();
    assert!(ok > 0, "the client loop saw no 200: {client_loop}");
    println!(
        "three-node walkthrough ran as printed; its client loop: {}",
        client_loop.replace('\n', ", ")
    );
    drop(stop);
}
