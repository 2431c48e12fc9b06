//! The servers under test: installing the peers from their recipes, starting a server pinned to
//! core 0 on loopback ports, checking that it listens on loopback only, and killing it.

use std::{
    env, fs,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cmd::{cargo, node_tool, run};

/// The first WebSocket and HTTP API port; node `i` listens on `WS_PORT + i`.
pub(crate) const WS_PORT: u16 = 26001;
/// The first operations (metrics) port.
const OPS_PORT: u16 = 26601;
/// Our cluster's UDP discovery port and multicast group, kept on loopback.
const CLUSTER_PORT: u16 = 26077;
const CLUSTER_GROUP: &str = "239.255.77.1";

/// The versions the issue names.
pub(crate) const SOKETI_VERSION: &str = "1.6.1";
pub(crate) const SOCKUDO_VERSION: &str = "2.9.2";

/// Which server a column measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// soketi-rs, as `nodes` processes (over the cluster adapter when more than one).
    Ours {
        nodes: usize,
    },
    Soketi,
    Sockudo,
}

impl Kind {
    pub(crate) fn label(self) -> String {
        match self {
            Self::Ours { nodes: 1 } => "soketi-rs".into(),
            Self::Ours { nodes } => format!("soketi-rs ×{nodes}"),
            Self::Soketi => format!("soketi {SOKETI_VERSION}"),
            Self::Sockudo => format!("sockudo {SOCKUDO_VERSION}"),
        }
    }

    pub(crate) fn nodes(self) -> usize {
        match self {
            Self::Ours { nodes } => nodes,
            Self::Soketi | Self::Sockudo => 1,
        }
    }
}

/// How to start one kind of server.
#[derive(Clone, Debug)]
pub(crate) struct Launcher {
    pub(crate) kind: Kind,
    program: PathBuf,
    args: Vec<String>,
    dir: Option<PathBuf>,
    /// Added to every port, so that another command's servers can run beside the benchmark's.
    offset: u16,
    /// Settings beyond the usual ones.
    env: Vec<(String, String)>,
}

/// Running server processes.
pub(crate) struct Running {
    children: Vec<Child>,
    offset: u16,
}

impl Running {
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Kills every process (the runs need no graceful end, and soketi takes 20 s for one) and
    /// waits until their ports are free again.
    pub(crate) fn stop(mut self, nodes: usize) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let offset = self.offset;
        while (0..nodes).any(|node| port_open(WS_PORT + offset + node as u16))
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Our release binary as a launcher.
pub(crate) fn ours(binary: &Path, nodes: usize) -> Launcher {
    Launcher {
        kind: Kind::Ours { nodes },
        program: binary.to_path_buf(),
        args: Vec::new(),
        dir: None,
        offset: 0,
        env: Vec::new(),
    }
}

/// soketi from npm, installed once under `peers` from the recipe folder.
pub(crate) fn install_soketi(recipes: &Path, peers: &Path) -> Result<Launcher> {
    let dir = peers.join("soketi");
    let server = dir.join("node_modules/@soketi/soketi/bin/server.js");
    if !server.is_file() {
        let recipe = recipes.join("soketi");
        let package = recipe.join("package.json");
        if !package.is_file() {
            bail!("no recipe at {}", package.display());
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::copy(&package, dir.join("package.json"))
            .with_context(|| format!("copying {}", package.display()))?;
        run(node_tool("npm", &dir).args(["install", "--no-audit", "--no-fund"]))?;
        if !server.is_file() {
            bail!("npm install left no {}", server.display());
        }
    }
    Ok(Launcher {
        kind: Kind::Soketi,
        program: "node".into(),
        args: vec![server.display().to_string(), "start".into()],
        dir: Some(dir),
        offset: 0,
        env: Vec::new(),
    })
}

/// sockudo from the Rust package registry, installed once under `peers` (about 4.5 minutes on
/// two cores), with the recipe's configuration moved to our ports.
pub(crate) fn install_sockudo(root: &Path, recipes: &Path, peers: &Path) -> Result<Launcher> {
    let install_root = peers.join("sockudo");
    let binary = install_root.join("bin/sockudo");
    if !binary.is_file() {
        let mut install = cargo(root);
        install
            .args([
                "install",
                "sockudo",
                "--version",
                SOCKUDO_VERSION,
                "--locked",
                "--root",
            ])
            .arg(&install_root)
            // A temporary target folder of its own, not the workspace's.
            .env_remove("CARGO_TARGET_DIR")
            .current_dir(peers);
        run(&mut install)?;
    }
    let recipe = recipes.join("sockudo/config.json");
    let text =
        fs::read_to_string(&recipe).with_context(|| format!("reading {}", recipe.display()))?;
    let mut config: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", recipe.display()))?;
    sockudo_config(&mut config)?;
    let path = peers.join("sockudo-bench.json");
    fs::write(&path, serde_json::to_string_pretty(&config)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Launcher {
        kind: Kind::Sockudo,
        program: binary,
        args: vec!["--config".into(), path.display().to_string()],
        dir: Some(peers.to_path_buf()),
        offset: 0,
        env: Vec::new(),
    })
}

/// The recipe's configuration on our ports, with room for the presence scenario's members.
/// Optional numeric app fields stay JSON strings, as sockudo needs.
fn sockudo_config(config: &mut Value) -> Result<()> {
    config["host"] = "127.0.0.1".into();
    config["port"] = WS_PORT.into();
    config["metrics"]["host"] = "127.0.0.1".into();
    config["metrics"]["port"] = OPS_PORT.into();
    config["presence"]["max_members_per_channel"] = 2000.into();
    let apps = config["app_manager"]["array"]["apps"]
        .as_array_mut()
        .context("the recipe has no app_manager.array.apps")?;
    for app in apps {
        app["max_presence_members_per_channel"] = "2000".into();
    }
    Ok(())
}

/// The open-files hard limit of this process, which the servers get as their soft limit too.
fn open_files_limit() -> u64 {
    fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits
                .lines()
                .find(|line| line.starts_with("Max open files"))?;
            line.split_whitespace().nth(4)?.parse().ok()
        })
        .unwrap_or(20_000)
}

impl Launcher {
    /// The same servers on every port plus `offset` (our server only: the peers' ports are in
    /// their configuration).
    pub(crate) fn with_port_offset(mut self, offset: u16) -> Self {
        self.offset = offset;
        self
    }

    /// The same servers with one more setting in their environment.
    pub(crate) fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The WebSocket (and HTTP API) address of each node.
    pub(crate) fn addresses(&self) -> Vec<SocketAddr> {
        self.ports(WS_PORT)
    }

    /// The operations (metrics) address of each node.
    pub(crate) fn ops_addresses(&self) -> Vec<SocketAddr> {
        self.ports(OPS_PORT)
    }

    fn ports(&self, first: u16) -> Vec<SocketAddr> {
        (0..self.kind.nodes())
            .map(|node| SocketAddr::from(([127, 0, 0, 1], first + self.offset + node as u16)))
            .collect()
    }

    /// Starts the server's nodes pinned to core 0, waits until every node answers (and, for a
    /// cluster, sees the others), and checks that nothing listens beyond loopback.
    pub(crate) fn start(&self, logs: &Path) -> Result<Running> {
        let nodes = self.kind.nodes();
        for address in self.addresses() {
            if port_open(address.port()) {
                bail!("port {} is already in use", address.port());
            }
        }
        let limit = open_files_limit();
        let mut running = Running {
            children: Vec::new(),
            offset: self.offset,
        };
        for node in 0..nodes {
            let log = fs::File::create(logs.join(format!("node{node}.log")))
                .with_context(|| format!("creating a log in {}", logs.display()))?;
            let mut cmd = Command::new("prlimit");
            cmd.arg(format!("--nofile={limit}:{limit}"))
                .args(["taskset", "-c", "0"])
                .arg(&self.program)
                .args(&self.args)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            if let Some(dir) = &self.dir {
                cmd.current_dir(dir);
            }
            self.environment(&mut cmd, node);
            cmd.envs(self.env.iter().map(|(key, value)| (key, value)));
            let child = cmd
                .spawn()
                .with_context(|| format!("starting {}", self.program.display()))?;
            running.children.push(child);
        }
        self.wait_ready(&mut running)?;
        check_loopback_only(&self.addresses(), &self.ops_addresses())?;
        Ok(running)
    }

    fn environment(&self, cmd: &mut Command, node: usize) {
        let ws = (WS_PORT + self.offset + node as u16).to_string();
        let ops = (OPS_PORT + self.offset + node as u16).to_string();
        let cluster_port = (CLUSTER_PORT + self.offset).to_string();
        match self.kind {
            Kind::Ours { nodes } => {
                cmd.envs([
                    ("SOKETI_HOST", "127.0.0.1"),
                    ("SOKETI_PORT", &ws),
                    ("SOKETI_METRICS_HOST", "127.0.0.1"),
                    ("SOKETI_METRICS_SERVER_PORT", &ops),
                    ("SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES", "true"),
                    ("SOKETI_PRESENCE_MAX_MEMBERS", "2000"),
                    ("RUST_LOG", "warn"),
                ]);
                if nodes > 1 {
                    cmd.envs([
                        ("SOKETI_ADAPTER_DRIVER", "cluster"),
                        ("SOKETI_CLUSTER_HOST", "127.0.0.1"),
                        ("SOKETI_CLUSTER_MULTICAST_ADDRESS", CLUSTER_GROUP),
                        ("SOKETI_CLUSTER_PORT", &cluster_port),
                    ]);
                }
            }
            Kind::Soketi => {
                // The cluster settings of the recipe are not optional: soketi starts its UDP
                // discovery whatever the adapter, and unicast to 127.0.0.1 keeps it on loopback.
                cmd.envs([
                    ("SOKETI_HOST", "127.0.0.1"),
                    ("SOKETI_PORT", &ws),
                    ("SOKETI_METRICS_HOST", "127.0.0.1"),
                    ("SOKETI_METRICS_SERVER_PORT", &ops),
                    ("SOKETI_ADAPTER_DRIVER", "local"),
                    ("SOKETI_CLUSTER_UNICAST_ADDRESSES", r#"["127.0.0.1"]"#),
                    ("SOKETI_CLUSTER_PORT", "11099"),
                    ("SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES", "true"),
                    ("SOKETI_PRESENCE_MAX_MEMBERS", "2000"),
                ]);
            }
            Kind::Sockudo => {}
        }
    }

    fn wait_ready(&self, running: &mut Running) -> Result<()> {
        let nodes = self.kind.nodes();
        let deadline = Instant::now() + Duration::from_secs(30);
        for address in self.addresses() {
            let port = address.port();
            while !port_open(port) {
                for child in &mut running.children {
                    if let Some(status) = child.try_wait()? {
                        bail!("exited before listening ({status}); see its log");
                    }
                }
                if Instant::now() > deadline {
                    bail!("not listening on 127.0.0.1:{port} after 30 s; see its log");
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
        if nodes > 1 {
            for (node, ops) in self.ops_addresses().into_iter().enumerate() {
                loop {
                    let peers = http_get(ops, "/cluster")
                        .ok()
                        .and_then(|body| serde_json::from_str::<Value>(&body).ok())
                        .and_then(|cluster| cluster["nodes"].as_array().map(Vec::len));
                    if peers == Some(nodes - 1) {
                        break;
                    }
                    if Instant::now() > deadline {
                        bail!(
                            "node {node} sees {peers:?} peers, not {}, after 30 s",
                            nodes - 1
                        );
                    }
                    thread::sleep(Duration::from_millis(200));
                }
            }
        }
        Ok(())
    }
}

fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A plain `GET` of `path`, returning the body.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let answer = crate::cmd::http_get(addr, path)?;
    let (_, body) = answer.split_once("\r\n\r\n").context("no body")?;
    Ok(body.to_owned())
}

/// Fails if anything listens on one of the benchmark's TCP ports at an address off loopback: a
/// server that ignored its host setting would take load from elsewhere.
fn check_loopback_only(ws: &[SocketAddr], ops: &[SocketAddr]) -> Result<()> {
    let ports: Vec<u16> = ws.iter().chain(ops).map(SocketAddr::port).collect();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for (address, port) in listeners(&text) {
            if ports.contains(&port) && !is_loopback_hex(&address) {
                bail!("something listens on port {port} beyond loopback ({table}: {address})");
            }
        }
    }
    Ok(())
}

/// The local address (hex, as the kernel writes it) and port of every listening socket in a
/// `/proc/net/tcp` or `tcp6` table.
pub(crate) fn listeners(table: &str) -> Vec<(String, u16)> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if state != "0A" {
                return None;
            }
            let (address, port) = local.split_once(':')?;
            Some((address.to_owned(), u16::from_str_radix(port, 16).ok()?))
        })
        .collect()
}

/// Whether a hex address of `/proc/net/tcp` (little-endian IPv4) or `tcp6` is on loopback.
pub(crate) fn is_loopback_hex(address: &str) -> bool {
    match address.len() {
        // 127.0.0.0/8: the first octet is the last byte in the kernel's order.
        8 => address.ends_with("7F"),
        // ::1, or ::ffff:127.x.x.x.
        32 => {
            address == "00000000000000000000000001000000"
                || (address.starts_with("0000000000000000FFFF0000") && address.ends_with("7F"))
        }
        _ => false,
    }
}

/// Where the peers' recipes are: `SOKETI_BENCH_PEERS`, or `../shared/peers` beside the
/// checkout.
pub(crate) fn recipes(root: &Path) -> PathBuf {
    env::var_os("SOKETI_BENCH_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/peers"))
}
