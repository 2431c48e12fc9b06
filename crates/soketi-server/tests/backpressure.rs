//! A client that stops reading is closed once its queue passes `max_backpressure`, and the
//! other subscribers of the channel keep receiving every event.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::{RawWs, api, eventually, server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_dropped_and_others_get_everything() {
    let server = server(|c| c.max_backpressure = 256 * 1024).await;
    let addr = server.local_addr();
    let (mut slow, _) = RawWs::connect_app(addr).await;
    slow.subscribe("feed").await;
    let (mut fast, _) = RawWs::connect_app(addr).await;
    fast.subscribe("feed").await;

    // 300 events of 60 KB: 18 MB, far beyond what the kernel buffers of a loopback socket hold
    // for a client that never reads.
    let data = "x".repeat(60 * 1024);
    let body = serde_json::json!({ "name": "tick", "channel": "feed", "data": data }).to_string();
    let progress = Arc::new(AtomicUsize::new(0));
    let reader = tokio::spawn({
        let progress = progress.clone();
        async move {
            let mut received = 0;
            while received < 300 {
                let frame = fast.next_json().await;
                if frame["event"] == "tick" {
                    received += 1;
                    progress.store(received, Ordering::Release);
                }
            }
            (fast, received)
        }
    });
    for sent in 0..300 {
        // The reading subscriber is a reader, however loaded the machine: the publisher keeps at
        // most two events (120 KB, under the limit) ahead of it.
        while progress.load(Ordering::Acquire) + 2 < sent {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (status, _) = api(addr, "POST", "/apps/app-id/events", &body).await;
        assert_eq!(status, 200);
    }
    let (_fast, received) = reader.await.expect("reader task");
    assert_eq!(received, 300, "the reading subscriber got every event");

    eventually("the slow subscriber to be dropped", || async {
        let (_, info) = api(addr, "GET", "/apps/app-id/channels/feed", "").await;
        info["subscription_count"] == 1
    })
    .await;
    assert_eq!(server.slow_connections_closed(), 1);
    // Reading now drains what the kernel held, then the end of the stream.
    let _ = slow.read_to_close().await;
    server.shutdown().await;
}
