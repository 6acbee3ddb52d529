//! `raftlb demo` as a new user runs it: every line it prints under "try:"
//! runs as printed, `ctl` finds the demo by itself, and a `kill` (SIGTERM)
//! stops it like Ctrl-C: the client file goes, the logs stay.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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

#[test]
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
    assert!(tries.len() >= 4, "{banner:#?}");
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
        if line.contains("curl") {
            assert_eq!(stdout.matches("demo backend").count(), 4, "{stdout}");
        }
    }

    // SIGTERM, as `kill` sends it.
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
