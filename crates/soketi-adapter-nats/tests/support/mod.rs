//! A throwaway nats-server for the tests of this crate: on a free loopback port (never 4222),
//! killed when the handle is dropped. Without nats-server (on PATH or in /usr/sbin) a test is
//! skipped with a printed reason, except under `SOKETI_TEST_REQUIRE_ALL=1` (what
//! `cargo xtask test` sets), where it fails instead.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use soketi_adapter_core::TransportEvent;
use tokio::sync::mpsc::UnboundedReceiver;

/// How long any single wait in these tests may take: far beyond what each needs on a loaded
/// machine, so that only a real failure reaches it.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The longest wait between two attempts of the NATS client to reconnect: async-nats's default
/// `reconnect_delay_callback` (2^attempts ms, at most 4 s), which the transport keeps.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(4);

/// What a reconnection may take beyond `MAX_RECONNECT_DELAY`: the connection, the
/// subscriptions sent again, and the test's own round trips on a busy two-core machine.
pub const RECONNECT_MARGIN: Duration = Duration::from_secs(5);

/// A nats-server of this test.
pub struct Nats {
    bin: PathBuf,
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

/// The nats-server found; `None` (with a printed reason) when it is absent, a panic when it
/// is absent under `SOKETI_TEST_REQUIRE_ALL=1`.
pub fn nats_server(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/bin".into()])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        assert!(
            std::env::var("SOKETI_TEST_REQUIRE_ALL").as_deref() != Ok("1"),
            "nats-server is required under SOKETI_TEST_REQUIRE_ALL=1 (apt-get install nats-server)"
        );
        eprintln!("{test}: skipped, nats-server is not on PATH");
    }
    found
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

impl Nats {
    /// Starts nats-server with `args` added to its command line (`--user`, `--auth`), or
    /// returns `None` when the test is skipped.
    pub fn start(test: &str, args: &[&str]) -> Option<Self> {
        Self::start_on(test, free_port(), args)
    }

    /// As `start`, on `port`.
    pub fn start_on(test: &str, port: u16, args: &[&str]) -> Option<Self> {
        let bin = nats_server(test)?;
        let mut nats = Self {
            bin,
            port,
            args: args.iter().map(|&a| a.to_owned()).collect(),
            child: None,
        };
        nats.launch();
        Some(nats)
    }

    /// Its address, as the transport's configuration names servers.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills it with SIGKILL (no goodbye to its clients) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it with SIGKILL and starts a new one on the same port, with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Starts the process again after `kill`.
    pub fn launch(&mut self) {
        let port = self.port.to_string();
        let mut child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p", &port])
            .args(&self.args)
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server starts");
        // nats-server greets every connection with an INFO line once it listens.
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let mut output = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = err.read_to_string(&mut output);
                }
                panic!("nats-server on port {port} exited ({status}) before answering:\n{output}");
            }
            if greets(self.port) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server on port {port} did not answer within {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Its output is not read again: drain it, so that it never blocks on a full pipe.
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut BufReader::new(stream), &mut std::io::sink());
            });
        }
        self.child = Some(child);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether something on `port` greets a new connection with an INFO line.
fn greets(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO")
}

/// The next event that `matches`, skipping others, within `DEADLINE`.
pub async fn next_event(
    events: &mut UnboundedReceiver<TransportEvent>,
    what: &str,
    matches: impl Fn(&TransportEvent) -> bool,
) -> TransportEvent {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {DEADLINE:?}"))
            .expect("the transport's events stay open");
        if matches(&event) {
            return event;
        }
    }
}

/// The next message (sender, payload), skipping joins and departures, within `DEADLINE`.
pub async fn next_message(
    events: &mut UnboundedReceiver<TransportEvent>,
    what: &str,
) -> (String, Vec<u8>) {
    match next_event(events, what, |e| {
        matches!(e, TransportEvent::Message { .. })
    })
    .await
    {
        TransportEvent::Message { from, payload } => (from, payload.to_vec()),
        _ => unreachable!("next_event returned a message"),
    }
}

/// Calls `check` until it returns `Some`, at most until `within` has passed.
pub async fn poll<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
