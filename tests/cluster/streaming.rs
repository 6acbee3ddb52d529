//! Bodies stream through the node without being buffered.

use std::time::Instant;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Request, StatusCode};

use crate::fixture::*;

const CHUNK: usize = 256 * 1024;
const TOTAL: u64 = 1 << 30;

on_both_paths! {
#[tokio::test]
async fn a_1_gib_upload_streams_with_flat_memory() {
    let (_backend, node) = HttpBackend::behind_one_node("sink").await;
    // Warm up so the baseline includes pools and buffers.
    assert_eq!(
        get(&client(), &node.url(8080, "/"), &[]).await.0,
        StatusCode::OK
    );
    let rss_before = node.memory_kb("VmRSS");

    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let chunks = (TOTAL / CHUNK as u64) as usize;
    let body =
        StreamBody::new(stream::iter((0..chunks).map(move |_| {
            Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone()))
        })));
    let request = Request::post(node.url(8080, "/upload"))
        .header("content-length", TOTAL.to_string())
        .body(body)
        .expect("request");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let started = Instant::now();
    let response = client.request(request).await.expect("response");
    let status = response.status();
    let text = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        String::from_utf8_lossy(&text),
        format!("sink POST /upload {TOTAL}\n")
    );

    let peak = node.memory_kb("VmHWM");
    let growth_mib = peak.saturating_sub(rss_before) / 1024;
    println!(
        "1 GiB upload through raftlb: {:.0} MiB/s, rss before {} MiB, peak {} MiB",
        1024.0 / elapsed.as_secs_f64(),
        rss_before / 1024,
        peak / 1024
    );
    assert!(
        growth_mib < 64,
        "node memory grew by {growth_mib} MiB during the upload"
    );
}
}
