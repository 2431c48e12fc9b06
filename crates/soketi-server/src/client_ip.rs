//! Who is connecting: the client's address (the peer's, or the one a trusted proxy reports in
//! `Forwarded` / `X-Forwarded-For`), and the per-address caps on WebSocket connections that a
//! server facing the internet may set. The counts are this node's; a fleet behind a balancer
//! that spreads one address over N nodes admits up to N times the cap.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use hyper::HeaderMap;

/// An address range in CIDR notation (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n` or a bare address; `None` when it is neither.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().ok()?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        (prefix <= bits).then_some(Self { network, prefix })
    }

    /// Whether `ip` is in the range; an IPv4 address mapped into IPv6 counts as IPv4.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy, in which case the
/// nearest address in the forwarding headers that is not a trusted proxy itself (`Forwarded`
/// when sent, else `X-Forwarded-For`). Headers from an untrusted peer are ignored: anyone can
/// write them.
pub(crate) fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let peer = peer.ip().to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|range| range.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops = forwarded_for(headers);
    // From the nearest hop back: the first one no trusted proxy wrote is the client.
    hops.into_iter()
        .rev()
        .map(|ip| ip.to_canonical())
        .find(|ip| !is_trusted(*ip))
        .unwrap_or(peer)
}

/// The addresses of the forwarding headers, the client first.
fn forwarded_for(headers: &HeaderMap) -> Vec<IpAddr> {
    let values = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>()
    };
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.eq_ignore_ascii_case("for")
                        .then(|| node_address(value))?
                })
            })
            .collect();
    }
    values("x-forwarded-for")
        .into_iter()
        .filter_map(node_address)
        .collect()
}

/// An address of a forwarding header: `1.2.3.4`, `1.2.3.4:56`, `"[2001:db8::1]:80"` or `::1`.
fn node_address(value: &str) -> Option<IpAddr> {
    let value = value.trim().trim_matches('"');
    if let Ok(ip) = value.parse() {
        return Some(ip);
    }
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    value.parse::<SocketAddr>().ok().map(|s| s.ip())
}

/// The per-address caps on WebSocket connections; both 0 means none, and then nothing is
/// counted.
pub(crate) struct IpLimiter {
    max_connections: u64,
    max_per_second: u64,
    by_ip: DashMap<IpAddr, Arc<IpCount>>,
}

#[derive(Default)]
struct IpCount {
    open: AtomicU64,
    /// The second of the last connects, and how many came in it, packed as `second << 20 |
    /// count` so that one atomic holds both.
    window: AtomicU64,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IpRefusal {
    /// The address has its most connections open.
    TooManyOpen(u64),
    /// The address opened its most connections this second.
    TooFast(u64),
}

impl std::fmt::Display for IpRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooManyOpen(max) => write!(
                f,
                "Your address has {max} connections open, the most it may."
            ),
            Self::TooFast(max) => write!(
                f,
                "Your address opened {max} connections this second, the most it may."
            ),
        }
    }
}

/// A connection counted against its address until it drops.
pub(crate) struct IpSlot(Option<Arc<IpCount>>);

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some(count) = &self.0 {
            count.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

const COUNT_BITS: u32 = 20;

impl IpLimiter {
    /// Caps of `max_connections` open and `max_per_second` new connections per address.
    pub(crate) fn new(max_connections: u64, max_per_second: u64) -> Self {
        Self {
            max_connections,
            max_per_second,
            by_ip: DashMap::new(),
        }
    }

    fn enabled(&self) -> bool {
        self.max_connections > 0 || self.max_per_second > 0
    }

    /// Counts a new connection from `ip` at `second` (any monotonic count of seconds), or says
    /// why it may not open.
    pub(crate) fn admit(&self, ip: IpAddr, second: u64) -> Result<IpSlot, IpRefusal> {
        if !self.enabled() {
            return Ok(IpSlot(None));
        }
        let count = self.by_ip.entry(ip).or_default().clone();
        if self.max_per_second > 0 {
            let max = self.max_per_second;
            let mut refused = false;
            let _ = count
                .window
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |packed| {
                    let (at, n) = (packed >> COUNT_BITS, packed & ((1 << COUNT_BITS) - 1));
                    let n = if at == second { n } else { 0 };
                    refused = n >= max;
                    (!refused).then_some(second << COUNT_BITS | (n + 1))
                });
            if refused {
                return Err(IpRefusal::TooFast(max));
            }
        }
        let open = count.open.fetch_add(1, Ordering::AcqRel);
        if self.max_connections > 0 && open >= self.max_connections {
            count.open.fetch_sub(1, Ordering::AcqRel);
            return Err(IpRefusal::TooManyOpen(self.max_connections));
        }
        Ok(IpSlot(Some(count)))
    }

    /// Forgets the addresses with nothing open and no connects since before `second`.
    pub(crate) fn sweep(&self, second: u64) {
        if !self.enabled() {
            return;
        }
        self.by_ip.retain(|_, count| {
            count.open.load(Ordering::Acquire) > 0
                || count.window.load(Ordering::Acquire) >> COUNT_BITS >= second
        });
    }

    /// Addresses with something counted, for tests.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.by_ip.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter()
            .map(|c| Cidr::parse(c).expect("a CIDR"))
            .collect()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.1.0.9".parse().unwrap()),
            "IPv4 mapped into IPv6"
        );
        assert!(
            Cidr::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            Cidr::parse("127.0.0.1")
                .unwrap()
                .contains("127.0.0.1".parse().unwrap())
        );
        assert!(
            !Cidr::parse("127.0.0.1")
                .unwrap()
                .contains("127.0.0.2".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "nope", "10.0.0/8", "::/129", ""] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let peer: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let xff = headers(&[("x-forwarded-for", "203.0.113.7, 10.0.0.9")]);
        assert_eq!(
            client_ip(peer, &xff, &[]),
            peer.ip(),
            "no trusted proxy: the peer"
        );
        let trusted = cidrs(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(peer, &xff, &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap(),
            "the nearest hop no trusted proxy wrote"
        );
        // A client that forges the header cannot hide behind it: the nearest untrusted hop wins.
        let forged = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.2")]);
        assert_eq!(
            client_ip(peer, &forged, &trusted),
            "198.51.100.2".parse::<IpAddr>().unwrap()
        );
        let forwarded = headers(&[(
            "forwarded",
            r#"for="[2001:db8::7]:4711";proto=https, for=10.0.0.9"#,
        )]);
        assert_eq!(
            client_ip(peer, &forwarded, &trusted),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
        let none = headers(&[]);
        assert_eq!(client_ip(peer, &none, &trusted), peer.ip());
    }

    #[test]
    fn addresses_are_capped_in_open_and_new_connections() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let limiter = IpLimiter::new(2, 0);
        let a = limiter.admit(ip, 1).unwrap();
        let _b = limiter.admit(ip, 1).unwrap();
        assert_eq!(limiter.admit(ip, 1).err(), Some(IpRefusal::TooManyOpen(2)));
        assert!(
            limiter.admit(other, 1).is_ok(),
            "another address has its own count"
        );
        drop(a);
        assert!(
            limiter.admit(ip, 1).is_ok(),
            "a closed connection frees its place"
        );

        let limiter = IpLimiter::new(0, 3);
        let slots: Vec<_> = (0..3).map(|_| limiter.admit(ip, 7).unwrap()).collect();
        assert_eq!(limiter.admit(ip, 7).err(), Some(IpRefusal::TooFast(3)));
        drop(slots);
        assert_eq!(
            limiter.admit(ip, 7).err(),
            Some(IpRefusal::TooFast(3)),
            "closing does not reset the second"
        );
        assert!(limiter.admit(ip, 8).is_ok(), "a new second");
        limiter.sweep(9);
        assert_eq!(
            limiter.tracked(),
            0,
            "nothing open and nothing this second: forgotten"
        );

        let off = IpLimiter::new(0, 0);
        for _ in 0..100 {
            let _ = off.admit(ip, 1).unwrap();
        }
        assert_eq!(off.tracked(), 0, "no caps, nothing counted");
    }
}
