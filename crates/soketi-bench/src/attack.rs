//! Attackers without credentials, run beside a measured load: slowloris sockets that drip a
//! WebSocket upgrade request a header line at a time, and unsigned uploads that announce a large
//! body and send it slowly. Each reconnects when the server cuts it off, so the pressure holds
//! for the whole run; what the server did to them is counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The attackers of a run.
#[derive(Clone, Copy, Debug)]
pub struct Attack {
    /// Where they connect: the server's main port.
    pub target: SocketAddr,
    /// Sockets that drip a request head.
    pub slowloris: usize,
    /// Unsigned uploads in flight.
    pub uploads: usize,
    /// Bytes each upload announces.
    pub upload_bytes: u64,
}

/// What the attackers met.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AttackReport {
    /// Slowloris sockets kept.
    pub slowloris: usize,
    /// Uploads kept in flight.
    pub uploads: usize,
    /// Times the server closed a slowloris socket (each then reconnected).
    pub slowloris_cut_off: u64,
    /// Slowloris sockets the server still held open when the run ended.
    pub slowloris_open_at_end: u64,
    /// The longest any slowloris socket was held, from its connect to its cut-off (or to the
    /// end of the run), in seconds.
    pub slowloris_longest_held_secs: f64,
    /// Uploads the server answered (401, 413, 408…) or closed before the whole body.
    pub uploads_refused: u64,
    /// Body bytes the uploads got into the server's socket, in MiB.
    pub upload_mib_sent: f64,
    /// Connects that failed (the server refusing new sockets).
    pub connect_failures: u64,
}

#[derive(Default)]
struct Counters {
    cut_off: AtomicU64,
    open: AtomicU64,
    refused: AtomicU64,
    sent: AtomicU64,
    connect_failures: AtomicU64,
    longest_held_ms: AtomicU64,
}

/// The running attackers; [`Attackers::stop`] ends them and says what they met.
pub(crate) struct Attackers {
    attack: Attack,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// How often a slowloris socket sends its next header line.
const DRIP_EVERY: Duration = Duration::from_secs(1);
/// Each write of an upload, and the pause between two: 160 KiB/s per upload.
const UPLOAD_CHUNK: usize = 16 * 1024;
const UPLOAD_EVERY: Duration = Duration::from_millis(100);
/// The pause before an attacker that was cut off connects again.
const RECONNECT_AFTER: Duration = Duration::from_millis(100);

impl Attackers {
    /// Starts every attacker on the current runtime.
    pub(crate) fn start(attack: Attack) -> Self {
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for _ in 0..attack.slowloris {
            tasks.spawn(slowloris(attack.target, counters.clone(), stopped.clone()));
        }
        for _ in 0..attack.uploads {
            tasks.spawn(upload(attack, counters.clone(), stopped.clone()));
        }
        Self {
            attack,
            counters,
            stop,
            tasks,
        }
    }

    /// Ends the attackers and reports.
    pub(crate) async fn stop(mut self) -> AttackReport {
        let open_at_end = self.counters.open.load(Ordering::Relaxed);
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        AttackReport {
            slowloris: self.attack.slowloris,
            uploads: self.attack.uploads,
            slowloris_cut_off: read(&self.counters.cut_off),
            slowloris_open_at_end: open_at_end,
            uploads_refused: read(&self.counters.refused),
            upload_mib_sent: read(&self.counters.sent) as f64 / (1024.0 * 1024.0),
            slowloris_longest_held_secs: read(&self.counters.longest_held_ms) as f64 / 1000.0,
            connect_failures: read(&self.counters.connect_failures),
        }
    }
}

/// Whether the server closed `stream` or answered on it, without waiting.
fn server_spoke(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 512];
    match stream.try_read(&mut byte) {
        Ok(_) => true, // an answer, or 0 for a close
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

async fn connect(target: SocketAddr, counters: &Counters) -> Option<TcpStream> {
    match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target)).await {
        Ok(Ok(stream)) => Some(stream),
        _ => {
            counters.connect_failures.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

async fn slowloris(
    target: SocketAddr,
    counters: Arc<Counters>,
    mut stopped: watch::Receiver<bool>,
) {
    while !*stopped.borrow() {
        let Some(mut stream) = connect(target, &counters).await else {
            tokio::time::sleep(RECONNECT_AFTER).await;
            continue;
        };
        counters.open.fetch_add(1, Ordering::Relaxed);
        let connected = tokio::time::Instant::now();
        let head = b"GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n";
        let mut alive = stream.write_all(head).await.is_ok();
        let mut line = 0u64;
        while alive && !*stopped.borrow() {
            tokio::select! {
                () = tokio::time::sleep(DRIP_EVERY) => {}
                _ = stopped.changed() => break,
            }
            line += 1;
            let header = format!("X-Drip-{line}: {line}\r\n");
            alive = !server_spoke(&mut stream) && stream.write_all(header.as_bytes()).await.is_ok();
        }
        counters.open.fetch_sub(1, Ordering::Relaxed);
        let held = u64::try_from(connected.elapsed().as_millis()).unwrap_or(u64::MAX);
        counters.longest_held_ms.fetch_max(held, Ordering::Relaxed);
        if !alive {
            counters.cut_off.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(RECONNECT_AFTER).await;
        }
    }
}

async fn upload(attack: Attack, counters: Arc<Counters>, mut stopped: watch::Receiver<bool>) {
    let chunk = vec![b'x'; UPLOAD_CHUNK];
    while !*stopped.borrow() {
        let Some(mut stream) = connect(attack.target, &counters).await else {
            tokio::time::sleep(RECONNECT_AFTER).await;
            continue;
        };
        let head = format!(
            "POST /apps/app-id/events HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            attack.upload_bytes
        );
        let mut alive = stream.write_all(head.as_bytes()).await.is_ok();
        let mut sent = 0u64;
        while alive && sent < attack.upload_bytes && !*stopped.borrow() {
            tokio::select! {
                () = tokio::time::sleep(UPLOAD_EVERY) => {}
                _ = stopped.changed() => break,
            }
            if server_spoke(&mut stream) {
                alive = false;
                break;
            }
            let take = chunk.len().min((attack.upload_bytes - sent) as usize);
            match tokio::time::timeout(UPLOAD_EVERY, stream.write(&chunk[..take])).await {
                Ok(Ok(n)) if n > 0 => {
                    sent += n as u64;
                    counters.sent.fetch_add(n as u64, Ordering::Relaxed);
                }
                Ok(_) => alive = false,
                // The server stopped reading: the upload waits, as a slow client would.
                Err(_) => {}
            }
        }
        if !alive || sent >= attack.upload_bytes {
            counters
                .refused
                .fetch_add(u64::from(!alive), Ordering::Relaxed);
            // Read what the server says, briefly, then start again.
            let mut answer = [0u8; 256];
            let _ =
                tokio::time::timeout(Duration::from_millis(200), stream.read(&mut answer)).await;
            tokio::time::sleep(RECONNECT_AFTER).await;
        }
    }
}
