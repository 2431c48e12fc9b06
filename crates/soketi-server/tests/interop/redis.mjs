// A throwaway redis-server for the tests of the Redis adapter: one per test file (or per
// `describe`), on a free loopback port, never the machine's own Redis on 6379, with no
// persistence, killed when the test process exits.
//
// redis-server must be on PATH. Without it the tests are skipped, unless
// SOKETI_TEST_REQUIRE_ALL=1 (set by `cargo xtask test`), where they fail instead: `.ci/run`
// installs it.

import { execFileSync, spawn } from 'node:child_process';
import { accessSync, constants, mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { freePort, scratch, until } from './harness.mjs';

const READY_DEADLINE_MS = 10_000;
const READY_POLL_MS = 25;
const STOP_GRACE_MS = 5_000;
const MAX_LOG_CHARS = 64 * 1024;

const MISSING =
  'redis-server is required for the Redis adapter tests but is not on PATH; ' +
  '`.ci/run` installs it (or: apt-get install redis-server)';

// Every redis-server still running when the test process exits is killed.
const liveChildren = new Set();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

/** The path of redis-server found on PATH (like `which redis-server`), or null. */
export function redisServerBinary() {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, 'redis-server');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory.
    }
  }
  return null;
}

/**
 * The `skip` option for a `describe` that needs redis-server: false when it is there, or when
 * SOKETI_TEST_REQUIRE_ALL=1 (then `startRedis` fails with the reason instead), and the reason
 * otherwise.
 */
export function redisSkip() {
  if (redisServerBinary()) return false;
  if (process.env.SOKETI_TEST_REQUIRE_ALL === '1') return false;
  return MISSING;
}

/**
 * Starts redis-server on a free loopback port (or `port`) and waits until it answers PING.
 * Options, all optional:
 * - `password`: the default user's password (`--requirepass`);
 * - `users`: ACL users, `[{ name, password, rules }]`, each `--user <name> reset on ><password> <rules>`
 *   (`rules` defaults to `['~*', '&*', '+@all']`: every key, channel and command); a user named
 *   `default` replaces the default one (`{ name: 'default', off: true }` turns it off);
 * - `admin`: `{ user, password }` that `command()` and readiness log in with (by default the
 *   default user with `password`, or none);
 * - `tls`: `{ cert, key, ca, authClients }` (PEM files, see `redisCertificates`): also serve TLS
 *   on a second free port, `tlsPort`, checking client certificates against `ca` when
 *   `authClients` is true. The plain port stays, for the test's own commands;
 * - `args`: more redis-server arguments (`['--cluster-enabled', 'yes']`);
 * - `dir`: its working directory (each node of a Cluster needs its own);
 * - `config`: a configuration file, put first on the command line (a sentinel's).
 * Resolves with:
 * - `port`;
 * - `stop()`: SIGTERM, SIGKILL after a grace period; resolves once it has exited;
 * - `restart()`: SIGKILL (no goodbye to its clients), then a new redis-server on the same
 *   port with the same options, resolving once that one answers PING;
 * - `logs()`: what the redis-servers of this handle printed (its tail);
 * - `command(args, { db })`: one command (`['PUBSUB', 'CHANNELS']`) over a raw connection
 *   logged in as `admin`, in database `db` (0 by default); resolves with the decoded reply
 *   (see `redisCommands`), rejecting on a Redis error.
 */
export async function startRedis({ port, password, users = [], admin, tls, args = [], dir, config } = {}) {
  const bin = redisServerBinary();
  if (!bin) throw new Error(MISSING);
  const redisPort = port ?? (await freePort());
  const tlsPort = tls ? await freePort() : undefined;
  const tlsArgs = tls
    ? [
        ...['--tls-port', String(tlsPort), '--tls-cert-file', tls.cert, '--tls-key-file', tls.key],
        ...['--tls-ca-cert-file', tls.ca, '--tls-auth-clients', tls.authClients ? 'yes' : 'no'],
      ]
    : [];
  const auth = admin ?? (password === undefined ? null : { password });
  const authArgs = [];
  if (password !== undefined) authArgs.push('--requirepass', password);
  for (const user of users) {
    const rules = user.off ? ['off'] : ['on', `>${user.password}`, ...(user.rules ?? ['~*', '&*', '+@all'])];
    authArgs.push('--user', user.name, ...(user.off ? [] : ['reset']), ...rules);
  }

  let log = '';
  let current = null;

  const launch = async () => {
    const child = spawn(
      bin,
      [
        // A configuration file comes first on redis-server's command line.
        ...(config ? [config] : []),
        ...['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
        ...authArgs,
        ...tlsArgs,
        ...args,
      ],
      { cwd: dir ?? scratch(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    liveChildren.add(child);
    const append = (chunk) => {
      log += chunk;
      if (log.length > MAX_LOG_CHARS) log = log.slice(-MAX_LOG_CHARS);
    };
    child.stdout.setEncoding('utf8').on('data', append);
    child.stderr.setEncoding('utf8').on('data', append);
    const exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        liveChildren.delete(child);
        resolve({ code, signal });
      });
    });
    const proc = { child, exited, exitInfo: null };
    exited.then((info) => {
      proc.exitInfo = info;
    });
    current = proc;

    const spawnError = new Promise((_, reject) => child.on('error', reject));
    const earlyExit = exited.then(({ code, signal }) => {
      throw new Error(`redis-server exited before answering PING (code ${code}, signal ${signal})`);
    });
    spawnError.catch(() => {});
    earlyExit.catch(() => {});
    try {
      await Promise.race([waitPong(redisPort, auth), spawnError, earlyExit]);
    } catch (err) {
      child.kill('SIGKILL');
      throw new Error(`redis-server on port ${redisPort} did not start: ${err.message}\nIts output:\n${log}`);
    }
  };

  const kill = async (signal) => {
    const proc = current;
    if (!proc || proc.exitInfo) return proc?.exitInfo ?? null;
    proc.child.kill(signal);
    const killer = setTimeout(() => proc.child.kill('SIGKILL'), STOP_GRACE_MS);
    try {
      return await proc.exited;
    } finally {
      clearTimeout(killer);
    }
  };

  await launch();
  return {
    port: redisPort,
    tlsPort,
    host: '127.0.0.1',
    get pid() {
      return current?.child.pid;
    },
    logs: () => log,
    stop: () => kill('SIGTERM'),
    kill: () => kill('SIGKILL'),
    async restart() {
      await kill('SIGKILL');
      log += `\n----- killed with SIGKILL; starting again on port ${redisPort} -----\n`;
      await launch();
    },
    async command(args, { db = 0 } = {}) {
      const [reply] = await redisCommands(redisPort, [args], { auth, db });
      if (reply instanceof Error) throw reply;
      return reply;
    },
  };
}

/** Resolves once a raw `PING` on `port` (after `AUTH`, with `auth`) answers PONG, retrying until the deadline. */
async function waitPong(port, auth = null) {
  const deadline = Date.now() + READY_DEADLINE_MS;
  let lastError = 'no answer yet';
  while (Date.now() < deadline) {
    try {
      if (auth === null) {
        if (await pingOnce(port)) return;
      } else {
        const [pong] = await redisCommands(port, [['PING']], { auth });
        if (pong === 'PONG') return;
      }
      lastError = 'an answer other than +PONG';
    } catch (err) {
      lastError = err.code ?? err.message;
    }
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
  }
  throw new Error(`PING on 127.0.0.1:${port} did not answer +PONG within ${READY_DEADLINE_MS} ms (${lastError})`);
}

/**
 * Sends `commands` (arrays of strings) over one raw RESP connection to `port`, after `AUTH`
 * (`auth`: `{ user, password }`, or null) and `SELECT db` when `db` is not 0, and resolves
 * with their replies in order: strings for simple and bulk strings, numbers for integers,
 * arrays, null, and an Error (not thrown) for a Redis error reply. A failed AUTH or SELECT
 * rejects. `encoding: 'latin1'` keeps every byte of binary values as one character.
 */
export function redisCommands(port, commands, { auth = null, db = 0, timeout = 5_000, encoding = 'utf8' } = {}) {
  const setup = [];
  if (auth) setup.push(auth.user === undefined ? ['AUTH', auth.password] : ['AUTH', auth.user, auth.password]);
  if (db !== 0) setup.push(['SELECT', String(db)]);
  const all = [...setup, ...commands];
  const encode = (args) => {
    const parts = [`*${args.length}\r\n`];
    for (const arg of args) parts.push(`$${Buffer.byteLength(String(arg))}\r\n${arg}\r\n`);
    return parts.join('');
  };
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buffer = Buffer.alloc(0);
    const replies = [];
    const done = (err, value) => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => done(new Error(`no answer to ${JSON.stringify(commands)} within ${timeout} ms`)), timeout);
    socket.on('connect', () => socket.write(all.map(encode).join('')));
    socket.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        let parsed;
        try {
          parsed = parseReply(buffer, 0, encoding);
        } catch (err) {
          done(err);
          return;
        }
        if (parsed === null) return;
        replies.push(parsed.value);
        buffer = buffer.subarray(parsed.end);
        if (replies.length === all.length) {
          const failedSetup = replies.slice(0, setup.length).find((r) => r instanceof Error);
          if (failedSetup) done(new Error(`${setup.map((c) => c[0]).join(' and ')} failed: ${failedSetup.message}`));
          else done(null, replies.slice(setup.length));
          return;
        }
      }
    });
    socket.on('error', (err) => done(err));
    socket.on('close', () => done(new Error(`the connection closed after ${replies.length} of ${all.length} replies`)));
  });
}

/**
 * Sends one command with `redisCommands` and resolves with its reply; a Redis error reply
 * rejects.
 */
export async function redisCall(port, args, options) {
  const [reply] = await redisCommands(port, [args], options);
  if (reply instanceof Error) throw new Error(`Redis ${args.join(' ')}: ${reply.message}`);
  return reply;
}

/** Parses one RESP2 reply at `offset`: `{ value, end }`, or null until it is complete. */
function parseReply(buffer, offset, encoding) {
  const lineEnd = buffer.indexOf('\r\n', offset);
  if (lineEnd < 0) return null;
  const type = String.fromCharCode(buffer[offset]);
  const line = buffer.toString(encoding, offset + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new Error(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const length = Number(line);
      if (length < 0) return { value: null, end: next };
      if (buffer.length < next + length + 2) return null;
      return { value: buffer.toString(encoding, next, next + length), end: next + length + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items = [];
      let end = next;
      for (let i = 0; i < count; i += 1) {
        const item = parseReply(buffer, end, encoding);
        if (item === null) return null;
        items.push(item.value);
        end = item.end;
      }
      return { value: items, end };
    }
    default:
      throw new Error(`not a RESP reply: ${JSON.stringify(buffer.toString('utf8', offset, Math.min(buffer.length, offset + 80)))}`);
  }
}

/** One connection that sends `PING` and resolves with whether the answer was `+PONG`. */
export function pingOnce(port, timeout = 1_000) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let answer = '';
    const done = (err, value) => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => done(new Error(`no answer within ${timeout} ms`)), timeout);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      answer += chunk;
      if (answer.includes('\r\n')) done(null, answer.startsWith('+PONG'));
    });
    socket.on('error', (err) => done(err));
    socket.on('close', () => done(new Error('closed without an answer')));
  });
}

/**
 * Makes PEM files with the openssl CLI in the scratch directory, named after `tag`: a CA
 * (`ca`), a server certificate for 127.0.0.1 and localhost signed by it (`cert`, `key`), a
 * client certificate signed by it (`clientCert`, `clientKey`), and another CA that signed none
 * of them (`otherCa`).
 */
export function redisCertificates(tag) {
  const dir = scratch();
  const run = (args) => {
    try {
      execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 });
    } catch (err) {
      throw new Error(`openssl ${args.join(' ')} failed (is openssl installed?): ${err.stderr ?? err.message}`);
    }
  };
  const ca = (name) =>
    run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2', '-subj', `/CN=${name}`,
      '-keyout', `${name}.key`, '-out', `${name}.pem`, '-addext', 'basicConstraints=critical,CA:TRUE',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const leaf = (name, signer, ext) => {
    run(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`]);
    run(['x509', '-req', '-in', `${name}.csr`, '-CA', `${signer}.pem`, '-CAkey', `${signer}.key`, '-CAcreateserial',
      '-days', '2', '-sha256', '-extfile', ext, '-out', `${name}.pem`]);
  };
  const ext = (name, text) => {
    writeFileSync(path.join(dir, name), `${text}\n`);
    return name;
  };
  ca(`${tag}-ca`);
  ca(`${tag}-other-ca`);
  leaf(`${tag}-server`, `${tag}-ca`, ext(`${tag}-server.ext`, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth'));
  leaf(`${tag}-client`, `${tag}-ca`, ext(`${tag}-client.ext`, 'extendedKeyUsage=clientAuth'));
  const at = (name) => path.join(dir, name);
  return {
    ca: at(`${tag}-ca.pem`),
    otherCa: at(`${tag}-other-ca.pem`),
    cert: at(`${tag}-server.pem`),
    key: at(`${tag}-server.key`),
    clientCert: at(`${tag}-client.pem`),
    clientKey: at(`${tag}-client.key`),
  };
}

/**
 * A master, one replica and three sentinels that watch it as `name`, with short timers
 * (down-after 1 s, failover timeout 3 s), each on a free port. Resolves with `{ master,
 * replica, sentinels: [{ port, ... }], name, masterPort(), stop(), logs() }`; `masterPort()`
 * asks a sentinel (SENTINEL get-master-addr-by-name) where the master is now.
 */
export async function startSentinelGroup({ name = 'mymaster' } = {}) {
  const master = await startRedis();
  const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(master.port)] });
  const sentinels = [];
  const stopAll = async () => {
    for (const s of sentinels) await s.stop();
    await replica.stop();
    await master.stop();
  };
  try {
    for (let i = 0; i < 3; i += 1) {
      const port = await freePort();
      const dir = path.join(scratch(), `sentinel-${port}`);
      mkdirSync(dir, { recursive: true });
      const conf = path.join(dir, 'sentinel.conf');
      writeFileSync(
        conf,
        [
          `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`,
          `sentinel monitor ${name} 127.0.0.1 ${master.port} 2`,
          `sentinel down-after-milliseconds ${name} 1000`,
          `sentinel failover-timeout ${name} 3000`,
          `sentinel parallel-syncs ${name} 1`,
        ].join('\n') + '\n',
      );
      sentinels.push(await startRedis({ port, config: conf, args: ['--sentinel'], dir }));
    }
    // The replica is in sync and every sentinel knows the replica and the other sentinels, so
    // that a failover can happen.
    await until(async () => {
      const info = await redisCall(replica.port, ['INFO', 'replication']).catch(() => '');
      return /master_link_status:up/.test(info);
    }, { timeout: 15_000, what: 'the replica to sync with the master' });
    for (const s of sentinels) {
      await until(async () => {
        const [m] = await redisCommands(s.port, [['SENTINEL', 'MASTER', name]]).catch(() => [null]);
        if (!Array.isArray(m)) return false;
        const field = (key) => Number(m[m.indexOf(key) + 1]);
        return field('num-slaves') >= 1 && field('num-other-sentinels') >= 2;
      }, { timeout: 20_000, what: `sentinel ${s.port} to know the replica and the other sentinels` });
    }
  } catch (err) {
    await stopAll();
    throw err;
  }
  return {
    master,
    replica,
    sentinels,
    name,
    async masterPort() {
      for (const s of sentinels) {
        const addr = await redisCall(s.port, ['SENTINEL', 'get-master-addr-by-name', name]).catch(() => null);
        if (Array.isArray(addr)) return Number(addr[1]);
      }
      return null;
    },
    stop: stopAll,
    logs: () => [master, replica, ...sentinels].map((r) => `--- redis ${r.port} ---\n${r.logs()}`).join('\n'),
  };
}

/**
 * A Redis Cluster of three masters (no replicas) made with `redis-cli --cluster create`, each
 * node on a free port with its own directory; with `tls`, every node also serves TLS (see
 * `startRedis`). Resolves with `{ nodes, ports, stop(), logs() }` once every slot is served.
 */
export async function startRedisCluster({ tls } = {}) {
  const nodes = [];
  const stopAll = async () => {
    for (const n of nodes) await n.stop();
  };
  try {
    for (let i = 0; i < 3; i += 1) {
      const port = await freePort();
      const dir = path.join(scratch(), `cluster-${port}`);
      mkdirSync(dir, { recursive: true });
      nodes.push(
        await startRedis({
          port,
          dir,
          tls,
          args: ['--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, 'nodes.conf'), '--cluster-node-timeout', '2000'],
        }),
      );
    }
    execFileSync(
      'redis-cli',
      ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'],
      { stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 },
    );
    for (const n of nodes) {
      await until(async () => /cluster_state:ok/.test(await redisCall(n.port, ['CLUSTER', 'INFO']).catch(() => '')), {
        timeout: 20_000,
        what: `cluster node ${n.port} to report cluster_state:ok`,
      });
    }
  } catch (err) {
    await stopAll();
    throw new Error(`could not make a Redis Cluster: ${err.stderr ?? ''}${err.message}`);
  }
  return {
    nodes,
    ports: nodes.map((n) => n.port),
    stop: stopAll,
    logs: () => nodes.map((r) => `--- redis ${r.port} ---\n${r.logs()}`).join('\n'),
  };
}

/** The adapter's liveness settings of the Redis fleet tests: heartbeats every 200 ms, a node gone after 1 s. */
export const FLEET_NODE_TIMEOUT_MS = 1_000;

/**
 * The environment of a node of a Redis fleet test: the Redis adapter with short liveness
 * settings, client events on, and `redis` (`SOKETI_DB_REDIS_*`, `SOKETI_*_CLUSTER_MODE`: where
 * and how to reach Redis) and `extra` on top.
 */
export function redisFleetEnv(redis, extra = {}) {
  return {
    SOKETI_ADAPTER_DRIVER: 'redis',
    SOKETI_ADAPTER_REDIS_HEARTBEAT_INTERVAL: '200',
    SOKETI_ADAPTER_REDIS_NODE_TIMEOUT: String(FLEET_NODE_TIMEOUT_MS),
    SOKETI_ADAPTER_REDIS_REQUESTS_TIMEOUT: '1000',
    SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: 'true',
    ...redis,
    ...extra,
  };
}
