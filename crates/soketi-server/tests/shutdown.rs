//! Shutdown asks every client to reconnect (4200) and refuses new connections.

mod support;

use support::{RawWs, server};

#[tokio::test]
async fn shutdown_closes_clients_with_4200() {
    let server = server(|c| c.shutdown_grace_period = 2000).await;
    let addr = server.local_addr();
    let (mut a, _) = RawWs::connect_app(addr).await;
    a.subscribe("news").await;
    let (mut b, _) = RawWs::connect_app(addr).await;

    let shutdown = tokio::spawn(server.shutdown());
    for client in [&mut a, &mut b] {
        let error = client.next_json().await;
        assert_eq!(error["event"], "pusher:error", "{error}");
        assert_eq!(error["data"]["code"], 4200);
        assert_eq!(client.read_to_close().await, Some(4200));
    }
    shutdown.await.expect("shutdown completes");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}
