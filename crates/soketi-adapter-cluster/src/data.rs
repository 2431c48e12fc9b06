//! The data plane: one TCP connection per peer, carrying length-delimited frames in order.
//!
//! A connection starts with a [`proto::Handshake`] frame naming the caller; every later frame
//! is one adapter envelope. Frames are a 4-byte big-endian length followed by the bytes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use soketi_adapter_core::TransportEvent;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::proto;
use crate::{ClusterError, Shared};

/// Who a data connection is from.
pub(crate) struct Handshake {
    pub(crate) prefix: String,
    pub(crate) node_id: String,
}

/// Binds the data listener on an ephemeral port of `host`.
pub(crate) async fn bind(host: IpAddr) -> Result<TcpListener, ClusterError> {
    TcpListener::bind(SocketAddr::new(host, 0))
        .await
        .map_err(|source| ClusterError::Socket {
            what: format!(
                "cannot bind the data listener on {host} (cluster.hostname, CLUSTER_HOST)"
            ),
            source,
        })
}

/// Accepts peers' connections and hands their frames to the adapter.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(receive(stream, from, shared.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster data listener cannot accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn receive(mut stream: TcpStream, from: SocketAddr, shared: Arc<Shared>) {
    let max = shared.config.max_frame_bytes;
    let handshake = match read_frame(&mut stream, 4096).await {
        Ok(Some(bytes)) => proto::Handshake::decode(&bytes[..]).ok(),
        _ => None,
    };
    let Some(handshake) = handshake else {
        tracing::debug!(%from, "dropping a data connection without a handshake");
        return;
    };
    if handshake.version != proto::VERSION || handshake.prefix != shared.config.prefix {
        tracing::debug!(%from, "dropping a data connection from another cluster");
        return;
    }
    loop {
        match read_frame(&mut stream, max).await {
            Ok(Some(payload)) => {
                let _ = shared.events.send(TransportEvent::Message {
                    from: handshake.node_id.clone(),
                    payload,
                });
            }
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(%from, error = %e, "a data connection failed");
                return;
            }
        }
    }
}

/// Reads one frame; `None` at a clean end of stream.
async fn read_frame(stream: &mut TcpStream, max: usize) -> std::io::Result<Option<Bytes>> {
    let mut header = [0u8; 4];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is over the limit of {max}"),
        ));
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await?;
    Ok(Some(Bytes::from(payload)))
}

/// Connects to a peer and sends it every queued frame, in order; reconnects with backoff and
/// sends again the frame a broken connection may have lost.
pub(crate) async fn send_loop(addr: SocketAddr, me: Handshake, mut queue: mpsc::Receiver<Bytes>) {
    let handshake = proto::Handshake {
        version: proto::VERSION,
        prefix: me.prefix,
        node_id: me.node_id,
    }
    .encode_to_vec();
    let mut pending: Vec<Bytes> = Vec::new();
    let mut attempt: u32 = 0;
    loop {
        let stream =
            match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => stream,
                _ => {
                    tokio::time::sleep(Duration::from_millis((25u64 << attempt.min(5)).min(1000)))
                        .await;
                    attempt += 1;
                    continue;
                }
            };
        let _ = stream.set_nodelay(true);
        let mut out = BufWriter::with_capacity(64 * 1024, stream);
        if write_frame(&mut out, &handshake).await.is_err() || out.flush().await.is_err() {
            attempt += 1;
            continue;
        }
        attempt = 0;
        loop {
            if pending.is_empty() && queue.recv_many(&mut pending, 256).await == 0 {
                return;
            }
            let mut failed = false;
            for frame in &pending {
                if write_frame(&mut out, frame).await.is_err() {
                    failed = true;
                    break;
                }
            }
            if failed || out.flush().await.is_err() {
                // Keep `pending`: it goes again on the next connection.
                tracing::debug!(%addr, "a data connection broke; reconnecting");
                break;
            }
            pending.clear();
        }
    }
}

async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(
    out: &mut W,
    frame: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(frame.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    out.write_all(&len.to_be_bytes()).await?;
    out.write_all(frame).await
}
