//! Finding peers over UDP: hellos out every keepalive interval, hellos in, silent peers out.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use parking_lot::Mutex;
use prost::Message as _;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::proto::{self, Hello};
use crate::{ClusterError, Shared};

/// How hellos travel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// To a broadcast address (soketi's default, 255.255.255.255).
    Broadcast(Ipv4Addr),
    /// To a multicast group, with TTL 1: the group stays on the local network.
    Multicast(Ipv4Addr),
    /// To each of a list of `host` or `host:port` entries; host names are resolved again every
    /// check interval.
    Unicast(Vec<String>),
}

/// The discovery socket and what it sends.
#[derive(Clone)]
pub(crate) struct Discovery {
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    data_port: u16,
    targets: Arc<Mutex<Vec<SocketAddr>>>,
    /// Senders of datagrams that were ignored, already reported once.
    reported: Arc<Mutex<HashSet<SocketAddr>>>,
}

/// How many senders of ignored datagrams are remembered; past that, they go unreported.
const MAX_REPORTED: usize = 256;

impl Discovery {
    /// Binds the discovery socket for the configured mode.
    pub(crate) fn bind(shared: Arc<Shared>, data_port: u16) -> Result<Self, ClusterError> {
        let config = &shared.config;
        let fail = |what: &str| {
            let what = format!("{what} (cluster.port {}, CLUSTER_PORT)", config.port);
            move |source| ClusterError::Socket { what, source }
        };
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
            .map_err(fail("cannot make the discovery socket"))?;
        // Several processes on one host share the discovery port; each gets every broadcast
        // and multicast hello.
        socket
            .set_reuse_address(true)
            .map_err(fail("cannot set SO_REUSEADDR"))?;
        socket
            .set_reuse_port(true)
            .map_err(fail("cannot set SO_REUSEPORT"))?;
        let interface = match config.host {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        let bind_ip = match &config.mode {
            Mode::Broadcast(_) => {
                socket
                    .set_broadcast(true)
                    .map_err(fail("cannot set SO_BROADCAST"))?;
                // Broadcast datagrams reach only sockets bound to the wildcard address.
                Ipv4Addr::UNSPECIFIED
            }
            Mode::Multicast(group) => {
                socket
                    .join_multicast_v4(group, &interface)
                    .map_err(fail("cannot join the multicast group"))?;
                socket
                    .set_multicast_if_v4(&interface)
                    .map_err(fail("cannot choose the multicast interface"))?;
                socket
                    .set_multicast_ttl_v4(1)
                    .map_err(fail("cannot set the multicast TTL"))?;
                socket
                    .set_multicast_loop_v4(true)
                    .map_err(fail("cannot loop multicast back"))?;
                Ipv4Addr::UNSPECIFIED
            }
            Mode::Unicast(_) => interface,
        };
        socket
            .set_nonblocking(true)
            .map_err(fail("cannot make the discovery socket non-blocking"))?;
        socket
            .bind(&SocketAddr::V4(SocketAddrV4::new(bind_ip, config.port)).into())
            .map_err(fail("cannot bind the discovery socket"))?;
        let socket = UdpSocket::from_std(socket.into())
            .map_err(fail("cannot register the discovery socket"))?;
        let targets = match &config.mode {
            Mode::Broadcast(address) | Mode::Multicast(address) => {
                vec![SocketAddr::V4(SocketAddrV4::new(*address, config.port))]
            }
            Mode::Unicast(_) => Vec::new(),
        };
        Ok(Self {
            shared,
            socket: Arc::new(socket),
            data_port,
            targets: Arc::new(Mutex::new(targets)),
            reported: Arc::default(),
        })
    }

    fn hello(&self, leaving: bool) -> Vec<u8> {
        Hello {
            version: proto::VERSION,
            prefix: self.shared.config.prefix.clone(),
            node_id: self.shared.node_id.clone(),
            started_at_ms: self.shared.started_at_ms,
            data_port: u32::from(self.data_port),
            data_host: String::new(),
            leaving,
        }
        .encode_to_vec()
    }

    async fn send_hello(&self, leaving: bool) {
        let hello = self.hello(leaving);
        let targets = self.targets.lock().clone();
        for target in targets {
            if let Err(e) = self.socket.send_to(&hello, target).await {
                tracing::debug!(%target, error = %e, "could not send a hello");
            }
        }
    }

    /// Tells the others this node leaves.
    pub(crate) async fn goodbye(&self) {
        self.send_hello(true).await;
    }

    /// Sends hellos, hears hellos and drops silent peers, until aborted.
    pub(crate) async fn run(self) {
        if let Mode::Unicast(entries) = &self.shared.config.mode {
            let resolved = resolve(entries, self.shared.config.port).await;
            *self.targets.lock() = resolved;
        }
        let mut hellos = tokio::time::interval(self.shared.config.hello_interval);
        let mut checks = tokio::time::interval(self.shared.config.check_interval);
        let mut buffer = vec![0u8; 2048];
        loop {
            tokio::select! {
                _ = hellos.tick() => self.send_hello(false).await,
                _ = checks.tick() => {
                    self.shared.expire();
                    if let Mode::Unicast(entries) = &self.shared.config.mode {
                        // Names are resolved again, so pods behind a headless Service that come
                        // and go are found; the lookup runs apart so a slow DNS delays nothing.
                        let (entries, port, targets) =
                            (entries.clone(), self.shared.config.port, self.targets.clone());
                        tokio::spawn(async move {
                            let resolved = resolve(&entries, port).await;
                            if !resolved.is_empty() {
                                *targets.lock() = resolved;
                            }
                        });
                    }
                }
                received = self.socket.recv_from(&mut buffer) => match received {
                    Ok((n, from)) => self.receive(&buffer[..n], from),
                    Err(e) => tracing::debug!(error = %e, "discovery receive failed"),
                },
            }
        }
    }

    /// Whether `from` is reported now: the first ignored datagram of each sender is, so that a
    /// foreign cluster or a stray sender on the port shows in the logs without flooding them.
    fn first_from(&self, from: SocketAddr) -> bool {
        let mut reported = self.reported.lock();
        reported.len() < MAX_REPORTED && reported.insert(from)
    }

    fn receive(&self, datagram: &[u8], from: SocketAddr) {
        let config = &self.shared.config;
        match read_hello(datagram, from, &config.prefix, &self.shared.node_id) {
            Heard::Garbage => {
                if self.first_from(from) {
                    tracing::warn!(%from, bytes = datagram.len(), "ignoring datagrams on the discovery port that are not hellos");
                } else {
                    tracing::debug!(%from, "ignoring a datagram that is not a hello");
                }
            }
            Heard::Foreign { version, prefix } => {
                if self.first_from(from) {
                    tracing::info!(
                        %from,
                        version,
                        prefix,
                        "ignoring hellos of another cluster or version"
                    );
                }
            }
            Heard::Nothing => {}
            Heard::Goodbye { node_id } => self.shared.gone(&node_id, "said goodbye"),
            Heard::Hello {
                node_id,
                started_at_ms,
                data_addr,
            } => self.shared.seen(&node_id, started_at_ms, data_addr),
        }
    }
}

/// What a datagram on the discovery port says.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// It is not a hello.
    Garbage,
    /// A hello of another cluster or wire version.
    Foreign {
        /// Its wire version.
        version: u32,
        /// Its cluster's prefix.
        prefix: String,
    },
    /// A hello to ignore: this node's own, one without a node id, or one without a valid port.
    Nothing,
    /// A node of this cluster leaves.
    Goodbye {
        /// The node.
        node_id: String,
    },
    /// A node of this cluster is alive.
    Hello {
        /// The node.
        node_id: String,
        /// When it started, in milliseconds since the epoch.
        started_at_ms: u64,
        /// Where its data listener is: the address it advertises, else the sender's.
        data_addr: SocketAddr,
    },
}

/// Reads a datagram that `from` sent to the discovery port of node `me`, of cluster `prefix`.
pub fn read_hello(datagram: &[u8], from: SocketAddr, prefix: &str, me: &str) -> Heard {
    let Ok(hello) = Hello::decode(datagram) else {
        return Heard::Garbage;
    };
    if hello.version != proto::VERSION || hello.prefix != prefix {
        return Heard::Foreign {
            version: hello.version,
            prefix: hello.prefix,
        };
    }
    if hello.node_id == me || hello.node_id.is_empty() {
        return Heard::Nothing;
    }
    if hello.leaving {
        return Heard::Goodbye {
            node_id: hello.node_id,
        };
    }
    let Ok(port) = u16::try_from(hello.data_port) else {
        return Heard::Nothing;
    };
    let host = hello
        .data_host
        .parse::<IpAddr>()
        .unwrap_or_else(|_| from.ip());
    Heard::Hello {
        node_id: hello.node_id,
        started_at_ms: hello.started_at_ms,
        data_addr: SocketAddr::new(host, port),
    }
}

/// Resolves unicast entries (`host` or `host:port`, the port defaulting to the cluster port).
async fn resolve(entries: &[String], default_port: u16) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for entry in entries {
        let with_port = if entry.parse::<SocketAddr>().is_ok() || has_port(entry) {
            entry.clone()
        } else {
            format!("{entry}:{default_port}")
        };
        match tokio::net::lookup_host(with_port.as_str()).await {
            Ok(addrs) => out.extend(addrs.filter(SocketAddr::is_ipv4)),
            Err(e) => tracing::debug!(entry, error = %e, "cannot resolve a unicast entry"),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether `host:port` ends in a port (and is not a bare IPv6 address).
fn has_port(entry: &str) -> bool {
    match entry.rsplit_once(':') {
        Some((host, port)) => !host.contains(':') && port.parse::<u16>().is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unicast_entries_resolve_with_the_default_port() {
        let resolved = resolve(
            &[
                "127.0.0.1".into(),
                "127.0.0.2:9000".into(),
                "localhost".into(),
                "no-such-host.invalid".into(),
            ],
            11002,
        )
        .await;
        assert!(resolved.contains(&"127.0.0.1:11002".parse().unwrap()));
        assert!(resolved.contains(&"127.0.0.2:9000".parse().unwrap()));
        assert!(has_port("a:1") && !has_port("a") && !has_port("::1"));
    }
}
