//! The data plane: one TCP connection per peer, carrying length-delimited frames in order.
//!
//! A connection starts with a [`proto::Handshake`] frame naming the caller; every later frame
//! is one adapter envelope. Frames are a 4-byte big-endian length followed by the bytes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use soketi_adapter_core::TransportEvent;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufWriter};
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

/// Reads one peer's connection until it ends, handing its frames to the adapter.
pub(crate) async fn receive<S: AsyncRead + Unpin>(
    mut stream: S,
    from: SocketAddr,
    shared: Arc<Shared>,
) {
    let max = shared.config.max_frame_bytes;
    // A connection this node drops is reported once, at the default level: it is a peer of
    // another version or cluster, or something that is not a node at all.
    let handshake = match read_frame(&mut stream, MAX_HANDSHAKE_BYTES).await {
        Ok(Some(bytes)) => match proto::Handshake::decode(&bytes[..]) {
            Ok(handshake) => handshake,
            Err(e) => {
                tracing::warn!(%from, error = %e, "dropping a data connection whose handshake does not decode");
                return;
            }
        },
        Ok(None) => {
            tracing::debug!(%from, "a data connection closed before its handshake");
            return;
        }
        Err(e) => {
            tracing::warn!(%from, error = %e, "dropping a data connection without a handshake");
            return;
        }
    };
    if handshake.version != proto::VERSION || handshake.prefix != shared.config.prefix {
        tracing::warn!(
            %from,
            version = handshake.version,
            prefix = handshake.prefix,
            "dropping a data connection from another cluster or version"
        );
        return;
    }
    let node = handshake.node_id;
    loop {
        match read_frame(&mut stream, max).await {
            Ok(Some(payload)) => {
                let _ = shared.events.send(TransportEvent::Message {
                    from: node.clone(),
                    payload,
                });
            }
            Ok(None) => return,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::warn!(%from, node, error = %e, "dropping a data connection that sent an oversized frame");
                return;
            }
            Err(e) => {
                // A peer that dies or restarts breaks its connections; discovery reports it.
                tracing::debug!(%from, node, error = %e, "a data connection failed");
                return;
            }
        }
    }
}

/// The largest handshake frame: a version, a prefix and a node id.
const MAX_HANDSHAKE_BYTES: usize = 4096;

/// Reads one frame; `None` at a clean end of stream.
async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    max: usize,
) -> std::io::Result<Option<Bytes>> {
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
/// sends again the frame a broken connection may have lost. `queued` counts the bytes of the
/// frames taken from `queue` until they are flushed.
pub(crate) async fn send_loop(
    addr: SocketAddr,
    me: Handshake,
    mut queue: mpsc::Receiver<Bytes>,
    queued: Arc<AtomicUsize>,
) {
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
            let sent: usize = pending.iter().map(Bytes::len).sum();
            queued.fetch_sub(sent, Ordering::AcqRel);
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
