// A throwaway private network for the tests of the cluster adapter's broadcast, multicast and
// unicast discovery: host network namespaces h1..hN, each with a veth pair whose other end is
// a port of a bridge in the root namespace. The bridge has 198.18.0.254/24 (the benchmarking
// range of RFC 2544, never routed), so the test process reaches node i at 198.18.0.i directly.
//
// Traffic safety: everything here is virtual. Broadcasts and multicasts sent inside a
// namespace leave only through its veth, and reach the bridge and the other namespaces; the
// root namespace does not forward them (limited broadcast is never forwarded, and nothing
// routes multicast). Each namespace's default route is on-link through its veth with no
// gateway (`default dev eth0`): a real LAN host has a default route, so that 255.255.255.255
// and multicast are routable from a socket bound to 0.0.0.0, but unicast to an outside address
// would only ARP on the bridge and go nowhere. No real interface is touched.
//
// Names start with `skt<pid>` (pid of the test process): `skt<pid>h<i>` (namespaces),
// `skt<pid>br` (bridge), `skt<pid>v<i>` (root ends of the veths; the namespace ends are renamed
// eth0). `createNetwork` first removes what a crashed run left (names `skt<pid>...` whose pid
// is no longer a running node process), and the network is removed by `destroy()`, and at
// process exit if a test file dies before its `after` hook.
//
// It needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2's `ip`. Without them the tests
// are skipped, unless SOKETI_TEST_REQUIRE_ALL=1, where they fail with the reason instead.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';

export const SUBNET = '198.18.0';
export const BRIDGE_ADDRESS = `${SUBNET}.254`;
export const NAME_PREFIX = `skt${process.pid}`;
/** Where `ip netns exec` finds a namespace's own /etc files (it bind-mounts them over /etc). */
const NETNS_ETC = '/etc/netns';
const LEFTOVER_RE = /^skt(\d+)(?:h\d+|br|[vp]\d+)$/;

/** Runs `ip` with `args` and returns its stdout; throws with stderr on failure. */
function ip(...args) {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
  } catch (err) {
    const stderr = err.stderr?.toString().trim();
    throw new Error(`ip ${args.join(' ')} failed: ${stderr || err.message}`);
  }
}

/** Like `ip`, but ignores failure (for teardown of what may already be gone). */
function ipQuiet(...args) {
  try {
    return ip(...args);
  } catch {
    return '';
  }
}

let availability = null;

/**
 * Whether this process can make network namespaces: null when it can, the reason otherwise.
 * It tries once (an `ip netns add` of a probe namespace, removed at once) and remembers.
 */
export function netnsUnavailable() {
  if (availability !== null) return availability || null;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    availability = `the network-namespace tests need root (uid ${process.getuid?.()}): they create namespaces, veths and a bridge`;
    return availability;
  }
  const probe = `${NAME_PREFIX}h0`;
  try {
    ip('netns', 'add', probe);
    ipQuiet('netns', 'del', probe);
    availability = '';
    return null;
  } catch (err) {
    ipQuiet('netns', 'del', probe);
    availability = `network namespaces are not available here: ${err.message}`;
    return availability;
  }
}

/**
 * The `skip` option for a `describe` that needs namespaces: false when they work, or when
 * SOKETI_TEST_REQUIRE_ALL=1 (then `createNetwork` fails with the reason), the reason otherwise.
 */
export function netnsSkip() {
  const reason = netnsUnavailable();
  if (!reason) return false;
  if (process.env.SOKETI_TEST_REQUIRE_ALL === '1') return false;
  return reason;
}

function isLiveTestProcess(pid) {
  if (pid === process.pid) return true;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return /node/.test(cmdline);
  } catch {
    return false;
  }
}

/** Namespace names listed by `ip netns list` ("name" or "name (id: 3)"). */
function listNamespaces() {
  return ipQuiet('netns', 'list')
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0])
    .filter(Boolean);
}

/** Interface names of the root namespace ("skt1v1@if5" becomes "skt1v1"). */
function listLinks() {
  return ipQuiet('-o', 'link', 'show')
    .split('\n')
    .map((line) => line.split(':')[1]?.trim().split('@')[0])
    .filter(Boolean);
}

/** Processes still in namespace `ns` (pids), killed with SIGKILL: only our own namespaces. */
function killNamespaceProcesses(ns) {
  const pids = ipQuiet('netns', 'pids', ns)
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((pid) => Number.isInteger(pid) && pid > 0);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  return pids;
}

/**
 * Removes namespaces, bridges and veths named `skt<pid>...` whose pid is not a running test
 * process (a crashed earlier run), killing the processes left in those namespaces. Returns
 * what it removed, for a diagnostic.
 */
export function removeLeftovers() {
  const removed = [];
  const stale = (name) => {
    const m = LEFTOVER_RE.exec(name);
    return m && Number(m[1]) !== process.pid && !isLiveTestProcess(Number(m[1]));
  };
  for (const ns of listNamespaces().filter(stale)) {
    killNamespaceProcesses(ns);
    ipQuiet('netns', 'del', ns);
    removed.push(`netns ${ns}`);
  }
  for (const ns of listEtcDirs().filter(stale)) {
    rmSync(`${NETNS_ETC}/${ns}`, { recursive: true, force: true });
    removed.push(`${NETNS_ETC}/${ns}`);
  }
  // Root ends of veths first (their peers die with the namespaces anyway), then bridges.
  const links = listLinks().filter(stale);
  for (const link of links.filter((l) => !l.endsWith('br'))) {
    ipQuiet('link', 'del', link);
    removed.push(`link ${link}`);
  }
  for (const link of links.filter((l) => l.endsWith('br'))) {
    ipQuiet('link', 'del', link);
    removed.push(`bridge ${link}`);
  }
  return removed;
}

/**
 * Creates the bridge and `hosts` namespaces (h1..hN at 198.18.0.1..N), once no other live run
 * holds 198.18.0.0/24 (it waits up to `busyTimeout` ms for that). Resolves with:
 * - `hosts`: `[{ name: 'h1', ns, address, wrap }]`, where `wrap` is the `startServer` option
 *   that runs a server in that namespace;
 * - `leftovers`: what a crashed earlier run had left and was removed first;
 * - `writeHosts(text, hosts)`: writes `text` as the /etc/hosts that processes started in the
 *   namespaces of `hosts` (all by default) see (`/etc/netns/<ns>/hosts`, bind-mounted by
 *   `ip netns exec`; written in place, so that a node already running reads the new names at
 *   its next lookup);
 * - `destroy()`: kills whatever still runs in the namespaces and removes them, their /etc files,
 *   the veths and the bridge (safe to call twice; also runs at process exit).
 */
export async function createNetwork({ hosts = 3, busyTimeout = 120_000 } = {}) {
  const reason = netnsUnavailable();
  if (reason) throw new Error(reason);
  const leftovers = removeLeftovers();
  await awaitSubnetFree(busyTimeout);

  const bridge = `${NAME_PREFIX}br`;
  const list = [];
  for (let i = 1; i <= hosts; i += 1) {
    list.push({ name: `h${i}`, ns: `${NAME_PREFIX}h${i}`, rootEnd: `${NAME_PREFIX}v${i}`, address: `${SUBNET}.${i}` });
  }

  let destroyed = false;
  const destroy = () => {
    if (destroyed) return;
    destroyed = true;
    for (const host of list) {
      killNamespaceProcesses(host.ns);
      ipQuiet('netns', 'del', host.ns);
      ipQuiet('link', 'del', host.rootEnd);
      rmSync(`${NETNS_ETC}/${host.ns}`, { recursive: true, force: true });
    }
    ipQuiet('link', 'del', bridge);
  };
  const writeHosts = (text, hosts = list) => {
    for (const host of hosts) {
      mkdirSync(`${NETNS_ETC}/${host.ns}`, { recursive: true });
      writeFileSync(`${NETNS_ETC}/${host.ns}/hosts`, `127.0.0.1 localhost\n${text}`);
    }
  };
  process.on('exit', destroy);

  try {
    ip('link', 'add', bridge, 'type', 'bridge', 'stp_state', '0', 'mcast_snooping', '0');
    ip('addr', 'add', `${BRIDGE_ADDRESS}/24`, 'dev', bridge);
    ip('link', 'set', bridge, 'up');
    for (const host of list) {
      const inNs = (...args) => ip('netns', 'exec', host.ns, 'ip', ...args);
      ip('netns', 'add', host.ns);
      ip('link', 'add', host.rootEnd, 'type', 'veth', 'peer', 'name', `${NAME_PREFIX}p${host.name.slice(1)}`);
      ip('link', 'set', `${NAME_PREFIX}p${host.name.slice(1)}`, 'netns', host.ns);
      ip('link', 'set', host.rootEnd, 'master', bridge);
      ip('link', 'set', host.rootEnd, 'up');
      inNs('link', 'set', 'lo', 'up');
      inNs('link', 'set', `${NAME_PREFIX}p${host.name.slice(1)}`, 'name', 'eth0');
      inNs('addr', 'add', `${host.address}/24`, 'dev', 'eth0');
      inNs('link', 'set', 'eth0', 'up');
      inNs('route', 'add', 'default', 'dev', 'eth0');
      host.wrap = ['ip', 'netns', 'exec', host.ns];
    }
  } catch (err) {
    destroy();
    throw err;
  }

  return { hosts: list, bridge, leftovers, destroy, writeHosts };
}

/** Interfaces of the root namespace that hold an address in 198.18.0.0/24. */
function subnetHolders() {
  return ipQuiet('-o', '-4', 'addr', 'show', 'to', `${SUBNET}.0/24`)
    .split('\n')
    .map((line) => line.split(/\s+/)[1])
    .filter(Boolean);
}

/**
 * Waits while another live run (another test process, say a second checkout's suite) holds
 * the subnet on its bridge: two bridges with 198.18.0.0/24 would make the root namespace's
 * route ambiguous. Stale holders were removed by `removeLeftovers`.
 */
async function awaitSubnetFree(timeout) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const holders = subnetHolders();
    if (holders.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(
        `${SUBNET}.0/24 is still in use in the root namespace by ${holders.join(', ')} after ${timeout} ms ` +
          '(another run of the namespace tests?); these tests need it for their bridge',
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** What is left of this process's network (namespaces, their /etc files and links named `skt<pid>`), for checks. */
export function ownLeftovers() {
  const own = (name) => name.startsWith(NAME_PREFIX) && LEFTOVER_RE.test(name);
  return [
    ...listNamespaces().filter(own).map((n) => `netns ${n}`),
    ...listEtcDirs().filter(own).map((n) => `${NETNS_ETC}/${n}`),
    ...listLinks().filter(own).map((l) => `link ${l}`),
  ];
}

/** The folders of /etc/netns (namespaces' own /etc files). */
function listEtcDirs() {
  try {
    return readdirSync(NETNS_ETC);
  } catch {
    return [];
  }
}
