//! The status page as a person sees it: rendered by a real browser
//! (headless Chromium), asserted on the rendered page, not its source.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::fixture::*;

/// The page at `admin` as Chromium renders it, after its scripts ran
/// (Chromium gets 60 s, then is killed).
fn rendered(chromium: &std::path::Path, admin: SocketAddr) -> String {
    use std::io::Read;
    let mut child = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=3000",
            "--dump-dom",
        ])
        .arg(format!("http://{admin}/"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run chromium");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut page = String::new();
        let _ = stdout.read_to_string(&mut page);
        page
    });
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "chromium failed: {status}");
    reader.join().expect("reader")
}

/// The rendered request rate of `frontend` in the frontends table.
fn rate_of(page: &str, frontend: &str) -> Option<f64> {
    let row = &page[page.find(&format!("<tr class=\"frontend\" data-name=\"{frontend}\">"))?..];
    let cell = &row[row.find("class=\"num rate\">")? + "class=\"num rate\">".len()..];
    cell[..cell.find('<')?].parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_leader_vip_traffic_and_a_banner_in_a_browser() {
    let chromium = debian_tool("chromium", "chromium");
    let ip = unique_ip();
    let steady = HttpBackend::start("steady", ip).await;
    let doomed = HttpBackend::start("doomed", ip).await;
    let vip = unique_ip();
    let seed = one_frontend(
        "http",
        8080,
        "round_robin",
        &[steady.address, doomed.address],
        "",
    )
    .replace(
        "algorithm = \"round_robin\"\n",
        "algorithm = \"round_robin\"\n  [pool.health]\n  check = \"tcp\"\n  interval_ms = 200\n  timeout_ms = 150\n  rise = 1\n  fall = 2\n",
    );
    let options = NodeOptions {
        vip: Some(vip),
        ..Default::default()
    };
    let cluster = Cluster::start_with(3, &seed, &options).await;
    let leader = &cluster.nodes[cluster.wait_leader(Duration::from_secs(10)).await];
    assert!(
        wait_until(Duration::from_secs(10), || leader.status()["vip"]["held"]
            == true)
        .await,
        "the leader never held the VIP"
    );
    // Light load on the leader's frontend, bounded in time and count.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (url, stop) = (leader.url(8080, "/"), stop.clone());
        tokio::spawn(async move {
            let http = client();
            for _ in 0..1_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let _ = get(&http, &url, &[]).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // The node keeps a point a second: let a few gather.
    assert!(
        wait_until(Duration::from_secs(10), || {
            leader.admin_get("/status/live").is_some_and(|(_, body)| {
                serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|live| {
                    live["traffic"]["front"]
                        .as_array()
                        .is_some_and(|p| p.len() >= 2)
                })
            })
        })
        .await
    );
    let page = tokio::task::block_in_place(|| rendered(&chromium, leader.admin));
    let id = leader.id;
    assert!(
        page.contains(&format!("id=\"leader\">node {id}<")),
        "{page}"
    );
    assert!(
        page.contains(&format!("id=\"vip\">{vip} held by node {id}")),
        "{page}"
    );
    let rate = rate_of(&page, "front").unwrap_or_else(|| panic!("no request rate: {page}"));
    assert!(rate > 0.0, "{page}");
    assert!(page.contains("data-frontend=\"front\""), "no chart: {page}");
    assert!(page.contains("<polyline"), "no chart line: {page}");
    for chart in ["p99 latency of front", "open connections of front"] {
        assert!(page.contains(chart), "no {chart} chart: {page}");
    }
    // Each backend's row has its latency and a chart of its last minute.
    let row = &page[page
        .find(&format!("<td>{}</td>", steady.address))
        .expect("the steady backend's row")..];
    let row = &row[..row.find("</tr>").expect("row end")];
    assert!(row.contains(" ms</td>"), "no latency: {row}");
    assert!(
        row.contains(&format!("the last minute of pool/{}", steady.address))
            && row.contains("<polyline"),
        "no chart: {row}"
    );
    // Nothing is down yet (other alerts, such as a node slow to answer
    // on a loaded machine, may come and go).
    assert!(!page.contains("is down"), "{page}");

    // A backend dies: the banner says so.
    doomed.kill().await;
    assert!(
        wait_until(Duration::from_secs(10), || {
            leader.status()["backends"]
                .as_array()
                .is_some_and(|b| b.iter().any(|b| b["health"] == "down"))
        })
        .await,
        "the killed backend was never seen down"
    );
    let page = tokio::task::block_in_place(|| rendered(&chromium, leader.admin));
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");
    assert!(page.contains("<div id=\"banner\" class=\"on\">"), "{page}");
    assert!(
        page.contains(&format!("backend pool/{} is down", doomed.address)),
        "{page}"
    );
    // Its row says why, as this node saw it.
    let row = &page[page
        .find(&format!("<td>{}</td>", doomed.address))
        .expect("its row")..];
    let row = &row[..row.find("</tr>").expect("row end")];
    assert!(row.contains("down ") && row.contains(" ago: "), "{row}");
    println!(
        "status page: leader, VIP holder, {rate} req/s and a chart rendered; banner after a backend died"
    );
}
