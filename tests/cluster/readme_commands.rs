//! The README's `raftlb ctl` lines, run as printed against a cluster
//! shaped like the demo's (frontend and pool `web`), found the way
//! `raftlb demo` makes `ctl` find it: through the client config file.

use std::path::Path;
use std::time::Duration;

use crate::fixture::*;

/// The `raftlb ctl` lines of the first `sh` block after "### raftlb ctl".
fn readme_ctl_lines(readme: &str) -> Vec<String> {
    let section = &readme[readme.find("### raftlb ctl").expect("a raftlb ctl section")..];
    let block = &section[section.find("```sh\n").expect("a command block") + 6..];
    let block = &block[..block.find("```").expect("the block's end")];
    block
        .lines()
        .filter(|line| line.starts_with("raftlb ctl"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ctl_line_of_the_readme_runs_as_printed() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let lines = readme_ctl_lines(&readme);
    assert!(lines.len() >= 10, "too few ctl lines found: {lines:?}");
    let backend = HttpBackend::start("a", unique_ip()).await;
    let seed = format!(
        "[[frontend]]\nname = \"web\"\nport = 8080\nprotocol = \"http\"\npool = \"web\"\n\n\
         [[pool]]\nname = \"web\"\nalgorithm = \"round_robin\"\n  [[pool.backend]]\n  address = \"{}\"\n",
        backend.address
    );
    let cluster = Cluster::start(3, &seed).await;
    cluster.wait_leader(Duration::from_secs(10)).await;
    // A home of its own: the client config file as the demo writes it, and
    // the working directory (`ctl get > cluster.toml`).
    let home = std::env::temp_dir().join(format!(
        "raftlb-readme-{}-{}",
        std::process::id(),
        cluster.nodes[0].ip
    ));
    std::fs::create_dir_all(home.join("raftlb")).expect("config dir");
    let endpoints: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("\"{}\"", n.api()))
        .collect();
    std::fs::write(
        home.join("raftlb/ctl.toml"),
        format!("endpoints = [{}]\n", endpoints.join(", ")),
    )
    .expect("ctl.toml");
    let bin = Path::new(env!("CARGO_BIN_EXE_raftlb"))
        .parent()
        .expect("binary dir");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for line in &lines {
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(line)
            .current_dir(&home)
            .env("PATH", &path)
            .env("XDG_CONFIG_HOME", &home)
            .env_remove("RAFTLB_ENDPOINT")
            .env_remove("RAFTLB_TOKEN")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("sh");
        assert!(
            output.status.success(),
            "`{line}` exited {:?}: {}{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let saved = std::fs::read_to_string(home.join("cluster.toml")).expect("ctl get wrote it");
    assert!(saved.contains("name = \"web\""), "{saved}");
    let _ = std::fs::remove_dir_all(&home);
}
