// Shared harness for the interop suite: it spawns the real soketi-server binary, and builds
// the clients that talk to it (pusher-js, the official `pusher` SDK, and a raw `ws` client for
// frames that pusher-js cannot express).
//
// Every wait in here has a deadline, and waits for something that happens rather than for time
// to pass (README.md, "Waits"). To show that something does NOT arrive, tests send a sentinel that
// must arrive after it (a later event, or a pong to a ping sent after the input), then check that
// the unwanted frame is not among those received.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, beforeEach } from 'node:test';

import PusherSdk from 'pusher';
import Pusher from 'pusher-js';
import WebSocket from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** The repository root: tests/interop sits in crates/soketi-server. */
export const REPO_ROOT = path.resolve(HERE, '../../../..');

/** The default app that the server creates from its SOKETI_DEFAULT_APP_* defaults. */
export const APP = Object.freeze({ appId: 'app-id', key: 'app-key', secret: 'app-secret' });

/** A fixed 32-byte master key, so that encrypted-channel tests are reproducible. */
export const ENCRYPTION_MASTER_KEY_BASE64 = Buffer.alloc(32, 7).toString('base64');

/** SDK options that make it encrypt events for, and sign, private-encrypted channels. */
export const ENCRYPTED = Object.freeze({ encryptionMasterKeyBase64: ENCRYPTION_MASTER_KEY_BASE64 });

/** socket_id as Pusher defines it: two unsigned integers joined by a dot. */
export const SOCKET_ID_RE = /^\d+\.\d+$/;

const READY_DEADLINE_MS = 10_000;
const READY_POLL_MS = 50;
const STOP_GRACE_MS = 5_000;
const DEFAULT_WAIT_MS = 5_000;
// Kept bounded so that a chatty server cannot exhaust the test process's memory.
const MAX_LOG_CHARS = 256 * 1024;

// Children still running when the test process exits are killed, so a crashed test file never
// leaves a server bound to a port.
const liveChildren = new Set();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

// ---------------------------------------------------------------------------------------------
// Server process
// ---------------------------------------------------------------------------------------------

/** Returns the path of the server binary, or throws a message that says how to get one. */
export function serverBinary() {
  const bin = process.env.SOKETI_BIN || path.join(REPO_ROOT, 'target', 'debug', 'soketi-server');
  if (!existsSync(bin)) {
    throw new Error(
      `soketi-server binary not found at ${bin}. ` +
        'Build it with `cargo build -p soketi-server` in the repository root, ' +
        'or point SOKETI_BIN at a binary.',
    );
  }
  return bin;
}

/** Finds a free TCP port on loopback by letting the kernel pick one for a throwaway listener. */
export async function freePort() {
  // Below Linux's ephemeral range (32768 to 60999 by default): a port from there can be taken
  // by the local end of any outgoing connection between this check and the server's bind,
  // which made starts fail now and then with "Address already in use".
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = QUIET_PORTS.from + Math.floor(Math.random() * (QUIET_PORTS.to - QUIET_PORTS.from));
    if (handedOut.has(port)) continue;
    // Taken before the check, so that callers awaiting at once never get the same port.
    handedOut.add(port);
    if (await canListen(port, '0.0.0.0')) return port;
  }
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Where `freePort` looks first, below the ephemeral range. */
const QUIET_PORTS = { from: 20_000, to: 32_000 };

/** The ports this process has handed out: never twice. */
const handedOut = new Set();

/** Whether a TCP listener can bind `port` on `host` now. */
function canListen(port, host) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/**
 * Every soketi option's environment name (without the `SOKETI_` prefix). The server reads most
 * of them with or without the prefix, so an inherited variable of either spelling is dropped
 * from a child's environment: the suite must not depend on the machine's environment.
 */
export const OPTION_ENV_NAMES = Object.freeze([
  // Server
  'HOST', 'PORT', 'DEBUG', 'MODE', 'PATH_PREFIX', 'SHUTDOWN_GRACE_PERIOD', 'USER_AUTHENTICATION_TIMEOUT',
  'HTTP_ACCEPT_TRAFFIC_MEMORY_THRESHOLD', 'HTTP_MAX_REQUEST_SIZE', 'SSL_CERT', 'SSL_KEY', 'SSL_PASS', 'SSL_CA', 'SSL_CHAIN',
  'ACTIVITY_TIMEOUT', 'PONG_TIMEOUT', 'LOG_FORMAT', 'MAX_BACKPRESSURE', 'REUSE_PORT',
  // Apps
  'APP_MANAGER_DRIVER', 'APP_MANAGER_CACHE_ENABLED', 'APP_MANAGER_CACHE_TTL',
  'DEFAULT_APP_ID', 'DEFAULT_APP_KEY', 'DEFAULT_APP_SECRET', 'DEFAULT_APP_MAX_CONNS',
  'DEFAULT_APP_ENABLE_CLIENT_MESSAGES', 'DEFAULT_APP_ENABLED', 'DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC',
  'DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC', 'DEFAULT_APP_MAX_READ_REQ_PER_SEC', 'DEFAULT_APP_USER_AUTHENTICATION',
  'DEFAULT_APP_ENABLE_WATCHLIST_EVENTS',
  'DEFAULT_APP_WEBHOOKS',
  'APP_MANAGER_DYNAMODB_TABLE', 'APP_MANAGER_DYNAMODB_REGION', 'APP_MANAGER_DYNAMODB_ENDPOINT',
  'APP_MANAGER_MYSQL_TABLE', 'APP_MANAGER_MYSQL_VERSION', 'APP_MANAGER_MYSQL_USE_V2',
  'APP_MANAGER_POSTGRES_TABLE', 'APP_MANAGER_POSTGRES_VERSION',
  'DB_MYSQL_HOST', 'DB_MYSQL_PORT', 'DB_MYSQL_USERNAME', 'DB_MYSQL_PASSWORD', 'DB_MYSQL_DATABASE',
  'DB_POSTGRES_HOST', 'DB_POSTGRES_PORT', 'DB_POSTGRES_USERNAME', 'DB_POSTGRES_PASSWORD', 'DB_POSTGRES_DATABASE',
  'DB_POOLING_ENABLED', 'DB_POOLING_MIN', 'DB_POOLING_MAX',
  // Adapter and cluster
  'ADAPTER_DRIVER', 'ADAPTER_CLUSTER_REQUESTS_TIMEOUT', 'ADAPTER_REDIS_PREFIX', 'ADAPTER_REDIS_CLUSTER_MODE',
  'ADAPTER_REDIS_REQUESTS_TIMEOUT', 'ADAPTER_REDIS_PUB_OPTIONS', 'ADAPTER_REDIS_SUB_OPTIONS',
  'ADAPTER_NATS_PREFIX', 'ADAPTER_NATS_SERVERS', 'ADAPTER_NATS_USER', 'ADAPTER_NATS_PASSWORD', 'ADAPTER_NATS_TOKEN',
  'ADAPTER_NATS_TIMEOUT', 'ADAPTER_NATS_REQUESTS_TIMEOUT', 'ADAPTER_NATS_NODES_NUMBER',
  'DB_REDIS_HOST', 'DB_REDIS_PORT', 'DB_REDIS_DB', 'DB_REDIS_USERNAME', 'DB_REDIS_PASSWORD', 'DB_REDIS_KEY_PREFIX',
  'DB_REDIS_SENTINELS', 'DB_REDIS_SENTINEL_PASSWORD', 'DB_REDIS_INSTANCE_NAME', 'DB_REDIS_CLUSTER_NODES',
  'DB_REDIS_TLS', 'DB_REDIS_TLS_CA', 'DB_REDIS_TLS_CERT', 'DB_REDIS_TLS_KEY', 'DB_REDIS_TLS_INSECURE',
  'CLUSTER_HOST', 'CLUSTER_PORT', 'CLUSTER_KEEPALIVE_INTERVAL', 'CLUSTER_CHECK_INTERVAL', 'CLUSTER_NODE_TIMEOUT',
  'CLUSTER_MASTER_TIMEOUT', 'CLUSTER_PREFIX', 'CLUSTER_IGNORE_PROCESS', 'CLUSTER_BROADCAST_ADDRESS',
  'CLUSTER_MULTICAST_ADDRESS', 'CLUSTER_UNICAST_ADDRESSES', 'DISCOVERY_HOSTNAME',
  // Rate limiter, cache, queue, metrics, webhooks
  'RATE_LIMITER_DRIVER', 'RATE_LIMITER_REDIS_OPTIONS', 'RATE_LIMITER_REDIS_CLUSTER_MODE',
  'CACHE_DRIVER', 'CACHE_REDIS_OPTIONS', 'CACHE_REDIS_CLUSTER_MODE', 'CHANNEL_CACHE_TTL',
  'QUEUE_DRIVER', 'QUEUE_REDIS_CONCURRENCY', 'QUEUE_REDIS_OPTIONS', 'QUEUE_REDIS_CLUSTER_MODE',
  'QUEUE_SQS_REGION', 'QUEUE_SQS_URL', 'QUEUE_SQS_ENDPOINT', 'QUEUE_SQS_CLIENT_OPTIONS',
  'QUEUE_SQS_PROCESS_BATCH', 'QUEUE_SQS_BATCH_SIZE', 'QUEUE_SQS_POLLING_WAIT_TIME_MS',
  'METRICS_ENABLED', 'METRICS_DRIVER', 'METRICS_HOST', 'METRICS_SERVER_PORT', 'METRICS_PROMETHEUS_PREFIX',
  'WEBHOOKS_BATCHING', 'WEBHOOKS_BATCHING_DURATION', 'CONSOLE_ENABLED',
  // Limits
  'CHANNEL_LIMITS_MAX_NAME_LENGTH', 'CHANNEL_MAX_NAME_LENGTH', 'EVENT_MAX_CHANNELS_AT_ONCE', 'EVENT_MAX_NAME_LENGTH',
  'EVENT_MAX_SIZE_IN_KB', 'EVENT_MAX_BATCH_SIZE', 'PRESENCE_MAX_MEMBERS', 'PRESENCE_MAX_MEMBER_SIZE',
]);

// Families of soketi option names, for options added after the list above was written. Only
// prefixes that no unrelated software uses (so not `HTTP_` or `SSL_`, which carry proxies and
// OpenSSL's certificate paths).
const OPTION_ENV_FAMILIES = [
  'ADAPTER_', 'APP_MANAGER_', 'CACHE_', 'CLUSTER_', 'DB_', 'DEFAULT_APP_', 'EVENT_MAX_', 'METRICS_',
  'PRESENCE_MAX_', 'QUEUE_', 'RATE_LIMITER_', 'WEBHOOKS_',
];
const OPTION_ENV_SET = new Set(OPTION_ENV_NAMES);

// The AWS SDK's own variables (credentials, profile, region, endpoint overrides, config files):
// a child gets only those its test sets (aws.mjs's `awsEnv`), never the machine's AWS account.
const AWS_ENV_PREFIX = 'AWS_';

/** Whether an inherited variable is dropped from a child's environment. */
function isScrubbed(name) {
  if (name === 'SOKETI_BIN') return false;
  if (name.startsWith('SOKETI_')) return true;
  if (name.startsWith(AWS_ENV_PREFIX)) return true;
  return OPTION_ENV_SET.has(name) || OPTION_ENV_FAMILIES.some((family) => name.startsWith(family));
}

/** The inherited environment without soketi's options, plus `env` (values made strings). */
function childEnvironment(env) {
  const childEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!isScrubbed(name)) childEnv[name] = value;
  }
  // Plain text logs read better in a failure report than ANSI colours.
  childEnv.NO_COLOR = process.env.NO_COLOR ?? '1';
  for (const [name, value] of Object.entries(env)) childEnv[name] = String(value);
  return childEnv;
}

/** The value of an option set in `env`, the `SOKETI_` spelling first. */
function envOption(env, name) {
  return env[`SOKETI_${name}`] ?? env[name];
}

// A directory for config files, certificates and the children's working directory, removed
// when the test process exits.
let scratchDir = null;

/** A directory of this test process's own, removed at exit. */
export function scratch() {
  if (!scratchDir) {
    scratchDir = mkdtempSync(path.join(os.tmpdir(), 'soketi-interop-'));
    process.on('exit', () => rmSync(scratchDir, { recursive: true, force: true }));
  }
  return scratchDir;
}

/**
 * Writes a config file in the scratch directory and returns its path. `content` is written
 * as it is when it is a string, and as JSON otherwise.
 */
export function writeConfig(name, content) {
  const file = path.join(scratch(), name);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return file;
}

/**
 * Spawns the server with the given extra environment and waits until `GET /ready` answers 200.
 *
 * Inherited soketi options (any `SOKETI_*` variable except SOKETI_BIN, and the unprefixed
 * option names of OPTION_ENV_NAMES) are dropped, so that the suite does not depend on the
 * developer's shell. The server binds loopback on a free port, with its metrics server on
 * another free port (`metricsPort`), unless `env` sets those.
 *
 * Options:
 * - `args`: the command line (for example `['start', '--config', file]`); none by default;
 * - `waitReady`: `false` to return as soon as the process is spawned;
 * - `tls`: `{ ca }` (PEM) when the server serves https/wss with a certificate signed by `ca`;
 * - `host`: the address the test reaches the server at (readiness, URLs, SDK, pusher-js) and
 *   the default SOKETI_HOST/SOKETI_METRICS_HOST; `127.0.0.1` by default;
 * - `wrap`: a command the binary runs under, for example `['ip', 'netns', 'exec', ns]` (it must
 *   exec the binary, so that the child's pid and signals are the server's);
 * - `readyOn: 'metrics'`: poll `/ready` on the metrics port instead of the main port, for
 *   servers that share their main port (SOKETI_REUSE_PORT), where another process may answer.
 */
export async function startServer(
  env = {},
  { args = [], waitReady: shouldWait = true, tls = null, host = '127.0.0.1', wrap = [], readyOn = 'main' } = {},
) {
  const bin = serverBinary();
  const port = await freePort();

  const defaults = { SOKETI_HOST: host, SOKETI_PORT: String(port) };
  if (envOption(env, 'METRICS_HOST') === undefined) defaults.SOKETI_METRICS_HOST = host;
  if (envOption(env, 'METRICS_SERVER_PORT') === undefined) defaults.SOKETI_METRICS_SERVER_PORT = String(await freePort());
  const childEnv = childEnvironment({ ...defaults, ...env });
  const actualPort = Number(childEnv.SOKETI_PORT ?? port);
  const metricsPort = Number(envOption(childEnv, 'METRICS_SERVER_PORT'));
  const metricsHost = envOption(childEnv, 'METRICS_HOST');
  const pathPrefix = envOption(env, 'PATH_PREFIX') ?? '';

  const [command, ...commandArgs] = [...wrap, bin, ...args];
  const child = spawn(command, commandArgs, { env: childEnv, cwd: scratch(), stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(child);

  // `log` keeps the tail of the output; `logTotal` counts every character ever appended, so
  // that a test can ask for just the output printed while it ran. `stderr` keeps the tail of
  // that stream alone, for the tests that read the server's log lines.
  let log = '';
  let logTotal = 0;
  let stderr = '';
  const append = (stream) => (chunk) => {
    const line = `[${stream}] ${chunk}`;
    log += line;
    logTotal += line.length;
    if (log.length > MAX_LOG_CHARS) log = log.slice(-MAX_LOG_CHARS);
    if (stream === 'stderr') {
      stderr += chunk;
      if (stderr.length > MAX_LOG_CHARS) stderr = stderr.slice(-MAX_LOG_CHARS);
    }
  };
  child.stdout.setEncoding('utf8').on('data', append('stdout'));
  child.stderr.setEncoding('utf8').on('data', append('stderr'));

  let stopping = false;
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exitInfo = { code, signal };
      liveChildren.delete(child);
      if (!stopping) {
        process.stderr.write(
          `\nsoketi-server (port ${actualPort}, env ${JSON.stringify(env)}) exited unexpectedly ` +
            `(code ${code}, signal ${signal}). Its output:\n${log}\n`,
        );
      }
      resolve(exitInfo);
    });
  });
  const spawnError = new Promise((_, reject) => child.on('error', reject));
  const earlyExit = exited.then(failEarlyExit);
  // Both only matter while waiting for readiness; later they must not become unhandled rejections.
  spawnError.catch(() => {});
  earlyExit.catch(() => {});

  const scheme = tls ? 'https' : 'http';
  const server = {
    host,
    port: actualPort,
    metricsHost,
    metricsPort,
    pathPrefix,
    env,
    args,
    tls,
    pid: child.pid,
    appId: envOption(env, 'DEFAULT_APP_ID') ?? APP.appId,
    key: envOption(env, 'DEFAULT_APP_KEY') ?? APP.key,
    secret: envOption(env, 'DEFAULT_APP_SECRET') ?? APP.secret,
    baseUrl: `${scheme}://${host}:${actualPort}`,
    /** The metrics/operations server's base URL. */
    metricsUrl: `http://${host}:${metricsPort}`,
    /** The WebSocket URL that pusher-js would open, for raw clients. */
    wsUrl(key = server.key, query = 'protocol=7&client=js&version=8.4.0&flash=false') {
      return `${tls ? 'wss' : 'ws'}://${host}:${actualPort}${pathPrefix}/app/${key}${query ? `?${query}` : ''}`;
    },
    /** Everything the child has printed so far (its last MAX_LOG_CHARS characters). */
    logs: () => log,
    /** What the child has written to stderr so far (its last MAX_LOG_CHARS characters). */
    stderr: () => stderr,
    /** A mark to pass to `dumpLogs`, to print only what comes after it. */
    logMark: () => logTotal,
    /** How the child exited, or null while it runs. */
    exitInfo: () => exitInfo,
    /** Resolves with `{ code, signal }` once the child has exited, or rejects after `timeout`. */
    waitExit: (timeout = STOP_GRACE_MS) => withTimeout(exited, timeout, `soketi-server (port ${actualPort}) to exit`),
    /** Sends a signal without waiting, for tests of shutdown; the exit is then expected. */
    signal(name) {
      stopping = true;
      child.kill(name);
    },
    /**
     * Kills the child with `name` (SIGKILL by default), an expected exit, and resolves with
     * `{ code, signal }` once it is gone, for tests of a node that dies without saying goodbye.
     */
    async kill(name = 'SIGKILL') {
      if (exitInfo) return exitInfo;
      stopping = true;
      child.kill(name);
      return withTimeout(exited, STOP_GRACE_MS, `soketi-server (port ${actualPort}) to die of ${name}`);
    },
    /** Sends SIGTERM, and SIGKILL if the child is still there after a grace period. */
    async stop() {
      if (exitInfo) return exitInfo;
      stopping = true;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      try {
        return await exited;
      } finally {
        clearTimeout(killer);
      }
    },
    /** Writes the child's output (since `mark`, if given) to stderr, used when a test fails. */
    dumpLogs(reason, mark = 0) {
      const kept = logTotal - log.length;
      const text = log.slice(Math.max(0, mark - kept));
      const since = mark > 0 ? ' since the test started' : '';
      process.stderr.write(
        `\n----- soketi-server output${since} (port ${actualPort}, env ${JSON.stringify(env)}): ${reason} -----\n` +
          `${text || '(nothing printed)'}\n----- end of soketi-server output -----\n`,
      );
    },
  };

  if (!shouldWait) return server;
  try {
    await Promise.race([waitReady(server, readyOn), spawnError, earlyExit]);
  } catch (err) {
    stopping = true;
    child.kill('SIGKILL');
    throw new Error(`soketi-server did not become ready: ${err.message}\nIts output:\n${log}`);
  }
  return server;
}

/**
 * Runs the binary to completion with `args` and the given extra environment (inherited soketi
 * options dropped, as in `startServer`, and nothing added), and resolves with
 * `{ code, signal, stdout, stderr, timedOut }`. A child still running after `timeout` is killed
 * and reported with `timedOut: true`.
 */
export function runOnce(args = [], env = {}, { timeout = 10_000 } = {}) {
  const bin = serverBinary();
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { env: childEnvironment(env), cwd: scratch(), stdio: ['ignore', 'pipe', 'pipe'] });
    liveChildren.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      if (stdout.length < MAX_LOG_CHARS) stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk) => {
      if (stderr.length < MAX_LOG_CHARS) stderr += chunk;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeout);
    child.on('error', (err) => {
      clearTimeout(timer);
      liveChildren.delete(child);
      reject(err);
    });
    // 'close' rather than 'exit', so that all of stdout and stderr has been read.
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      liveChildren.delete(child);
      resolve({ code, signal, stdout, stderr, timedOut, args, env });
    });
  });
}

/** Describes a `runOnce` result for an assertion message. */
export function describeRun(run) {
  const how = run.timedOut ? 'was still running at the deadline' : `exited with code ${run.code} (signal ${run.signal})`;
  return (
    `soketi-server ${run.args.join(' ')} with env ${JSON.stringify(run.env)} ${how}\n` +
    `--- stdout ---\n${run.stdout || '(empty)'}\n--- stderr ---\n${run.stderr || '(empty)'}`
  );
}

/**
 * Runs `soketi-server config` (with `args` after it) and returns the effective configuration it
 * prints, failing with the output if it does not exit 0 with JSON on stdout.
 */
export async function effectiveConfig(env = {}, args = []) {
  const run = await runOnce(['config', ...args], env);
  assert.equal(run.code, 0, describeRun(run));
  try {
    return JSON.parse(run.stdout);
  } catch (err) {
    throw new Error(`stdout is not JSON (${err.message}): ${describeRun(run)}`);
  }
}

/**
 * Runs the server with a configuration that must stop start-up, and returns its stderr lines
 * after checking that it exited with a non-zero code before the deadline.
 */
export async function failedStart(args, env, timeout = 5_000) {
  const run = await runOnce(args, env, { timeout });
  assert.ok(!run.timedOut, `expected start-up to fail: ${describeRun(run)}`);
  assert.notEqual(run.code, 0, `expected a non-zero exit code: ${describeRun(run)}`);
  return { run, lines: run.stderr.split('\n').filter((l) => l.trim() !== '') };
}

function failEarlyExit({ code, signal }) {
  throw new Error(`it exited before answering /ready (code ${code}, signal ${signal})`);
}

async function waitReady(server, readyOn = 'main') {
  const deadline = Date.now() + READY_DEADLINE_MS;
  // soketi serves every route under the path prefix; accept /ready at either place.
  const paths = [...new Set([`${server.pathPrefix}/ready`, '/ready'])];
  const base = readyOn === 'metrics' ? server.metricsUrl : server.baseUrl;
  const ca = readyOn === 'metrics' ? undefined : server.tls?.ca;
  let lastError = 'no answer yet';
  while (Date.now() < deadline) {
    for (const readyPath of paths) {
      try {
        const res = await httpRequest(`${base}${readyPath}`, { ca, timeout: 1_000 });
        if (res.status === 200) return;
        lastError = `GET ${readyPath} answered ${res.status}`;
      } catch (err) {
        lastError = err.code ?? err.cause?.code ?? err.message;
      }
    }
    await delay(READY_POLL_MS);
  }
  throw new Error(`GET /ready did not answer 200 within ${READY_DEADLINE_MS} ms (${lastError})`);
}

/**
 * A plain HTTP(S) request through node:http, for what `fetch` cannot do: trust a test CA,
 * send any method and headers (CORS preflights), or read every response header.
 * Resolves with `{ status, headers, text, json }` (`json` undefined unless the body is JSON).
 */
export function httpRequest(url, { method = 'GET', headers = {}, body, ca, servername, timeout = DEFAULT_WAIT_MS } = {}) {
  const target = new URL(url);
  const lib = target.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(
      target,
      { method, headers, timeout, ...(ca ? { ca, rejectUnauthorized: true } : {}), ...(servername ? { servername } : {}), agent: false },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          text += chunk;
        });
        res.on('end', () => {
          let json;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode, headers: res.headers, text, json });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`got no answer within ${timeout} ms`)));
    req.on('error', (err) => {
      // Name the request in the message; `code` (ECONNREFUSED, ...) is kept for callers.
      err.message = `${method} ${url}: ${err.message}`;
      reject(err);
    });
    req.end(body);
  });
}

/**
 * Registers suite hooks that start one server for the enclosing `describe`, close the clients
 * each test opened, print the server output when a test fails, and stop the server at the end.
 *
 * The returned scope hands out clients that are closed after each test, so that one test's
 * connections never leak into the next one's counts.
 */
export function useServer(env = {}, options = {}) {
  const scope = new Scope();
  before(async () => {
    scope.server = await startServer(env, options);
  });
  beforeEach(() => {
    scope.logMark = scope.server?.logMark() ?? 0;
  });
  afterEach((t) => {
    if (t.passed === false) scope.server?.dumpLogs(`test "${t.name}" failed`, scope.logMark);
    scope.closeClients();
  });
  after(async () => {
    scope.closeClients();
    await scope.server?.stop();
  });
  return scope;
}

/**
 * Clients of one server (`scope.server`), closed by `closeClients()`. `useServer` makes one per
 * `describe`; tests of several servers make one per server.
 */
export class Scope {
  constructor() {
    this.server = null;
    this.clients = [];
  }

  /**
   * The same scope seen as another app of the server (`{ id, key, secret }`, see `withApp`):
   * its clients, SDK and signatures use that app, and its clients are closed with the others.
   */
  forApp(app) {
    const view = Object.create(this);
    view.server = withApp(this.server, app);
    return view;
  }

  /** A pusher-js client that is disconnected after the test. */
  pusher(opts = {}) {
    const client = pusherClient(this.server, opts);
    this.clients.push(() => client.disconnect());
    return client;
  }

  /** A pusher-js client that has reached the `connected` state. */
  async connectedPusher(opts = {}) {
    const client = this.pusher(opts);
    await connected(client);
    return client;
  }

  /** A raw WebSocket client, open but not waiting for any frame. */
  async raw(url = this.server.wsUrl()) {
    const client = await rawWs(url);
    this.clients.push(() => client.terminate());
    return client;
  }

  /** A raw WebSocket client that has received `pusher:connection_established`. */
  async rawConnected(url = this.server.wsUrl()) {
    const client = await this.raw(url);
    await client.established();
    return client;
  }

  /**
   * A raw client accepted once the server has room again (after a refusal such as 4100): it
   * retries with a deadline, since the server may count a close a moment after the client
   * sees it.
   */
  async rawAcceptedAgain() {
    return until(
      async () => {
        const candidate = await this.raw();
        const frame = await candidate.next((f) => f.event === 'pusher:connection_established' || f.event === 'pusher:error');
        if (frame.event === 'pusher:connection_established') return candidate;
        candidate.terminate();
        return null;
      },
      { what: 'a connection to be accepted again after one closed' },
    );
  }

  /**
   * A raw client subscribed to `channel`, signed as needed (with `presence` as the channel_data
   * of presence channels). The subscription_succeeded frame is in `client.succeeded`.
   */
  async rawSubscribed(channel, presence) {
    const client = await this.rawConnected();
    client.succeeded = await client.subscribeOk(channel, subscribeData(this.server, client.socketId, channel, presence));
    return client;
  }

  /** The SDK, signed with the default app's credentials unless overridden. */
  sdk(overrides = {}) {
    return pusherServer(this.server, overrides);
  }

  closeClients() {
    const closers = this.clients.splice(0);
    for (const close of closers) {
      try {
        close();
      } catch {
        // A client that is already closed has nothing left to release.
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Official clients
// ---------------------------------------------------------------------------------------------

/**
 * The server seen as one of its other apps (from a config file): `{ id, key, secret }`
 * replace the default app's credentials for the SDK, pusher-js, `wsUrl` and signing helpers.
 */
export function withApp(server, { id, key, secret }) {
  const view = { ...server, appId: id, key, secret };
  view.wsUrl = (appKey = key, query) => (query === undefined ? server.wsUrl(appKey) : server.wsUrl(appKey, query));
  return view;
}

/** The official server SDK pointed at the test server. */
export function pusherServer(server, overrides = {}) {
  return new PusherSdk({
    appId: server.appId,
    key: server.key,
    secret: server.secret,
    host: server.host,
    port: String(server.port),
    useTLS: Boolean(server.tls),
    // With TLS, the SDK checks the server's certificate against the test's CA.
    ...(server.tls ? { agent: new https.Agent({ ca: server.tls.ca, rejectUnauthorized: true }) } : {}),
    ...overrides,
  });
}

/**
 * A pusher-js client whose channel authorization and user authentication are signed locally
 * by the SDK, so no auth HTTP endpoint is needed.
 *
 * Options besides pusher-js's own:
 * - `presence`: `{ user_id, user_info }` sent as channel_data for presence channels;
 * - `user`: the user data (`{ id, ... }`) for `pusher.signin()`;
 * - `signer`: the SDK used to sign (by default the app's, with the test master key so that
 *   private-encrypted channels get their shared_secret; for example one with a wrong secret);
 * - `key`: the app key to connect with.
 */
export function pusherClient(server, opts = {}) {
  const { presence, user, signer = pusherServer(server, ENCRYPTED), key = server.key, ...rest } = opts;

  const channelHandler = ({ socketId, channelName }, callback) => {
    try {
      const data = channelName.startsWith('presence-') ? presence : undefined;
      callback(null, signer.authorizeChannel(socketId, channelName, data));
    } catch (err) {
      callback(err, null);
    }
  };
  const userHandler = ({ socketId }, callback) => {
    try {
      callback(null, signer.authenticateUser(socketId, user));
    } catch (err) {
      callback(err, null);
    }
  };

  return new Pusher(key, {
    wsHost: server.host,
    wsPort: server.port,
    wssPort: server.port,
    forceTLS: Boolean(server.tls),
    enabledTransports: ['ws'],
    cluster: 'mt1',
    disableStats: true,
    channelAuthorization: { customHandler: channelHandler },
    userAuthentication: { customHandler: userHandler },
    ...rest,
  });
}

/** Resolves once the pusher-js client is `connected`, rejecting on `failed` or the deadline. */
export function connected(client, timeout = DEFAULT_WAIT_MS) {
  return waitUntilEvent(
    client.connection,
    'state_change',
    () => client.connection.state === 'connected',
    () => {
      const state = client.connection.state;
      if (state === 'failed' || state === 'unavailable') {
        throw new Error(`pusher-js connection went to "${state}"`);
      }
    },
    timeout,
    'pusher-js to reach "connected"',
  );
}

/**
 * Subscribes a pusher-js client and waits for `pusher:subscription_succeeded`. Resolves with
 * `{ channel, data }`; rejects with the subscription error's data if that arrives instead.
 */
export function subscribe(client, name, timeout = DEFAULT_WAIT_MS) {
  const channel = client.subscribe(name);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no subscription result for ${name} within ${timeout} ms`));
    }, timeout);
    const ok = (data) => {
      cleanup();
      resolve({ channel, data });
    };
    const fail = (data) => {
      cleanup();
      const err = new Error(`subscription to ${name} failed: ${JSON.stringify(data)}`);
      err.data = data;
      reject(err);
    };
    const cleanup = () => {
      clearTimeout(timer);
      channel.unbind('pusher:subscription_succeeded', ok);
      channel.unbind('pusher:subscription_error', fail);
    };
    channel.bind('pusher:subscription_succeeded', ok);
    channel.bind('pusher:subscription_error', fail);
  });
}

/**
 * Waits for `event` on a pusher-js dispatcher (channel, connection, user) or a Node
 * EventEmitter, and resolves with the callback's arguments as an array.
 */
export function waitForArgs(target, event, { timeout = DEFAULT_WAIT_MS, filter = () => true } = {}) {
  return new Promise((resolve, reject) => {
    const [on, off] = listenerMethods(target);
    const handler = (...args) => {
      if (!filter(...args)) return;
      clearTimeout(timer);
      off(event, handler);
      resolve(args);
    };
    const timer = setTimeout(() => {
      off(event, handler);
      reject(new Error(`event "${event}" did not arrive within ${timeout} ms`));
    }, timeout);
    on(event, handler);
  });
}

/** Like `waitForArgs`, resolving with the first argument only (the event's data). */
export async function waitFor(target, event, opts) {
  const [data] = await waitForArgs(target, event, opts);
  return data;
}

/** Records every `event` emitted on `target` until `stop()` is called. */
export function record(target, event) {
  const [on, off] = listenerMethods(target);
  const seen = [];
  const handler = (...args) => seen.push(args.length > 1 ? args : args[0]);
  on(event, handler);
  // Not enumerable, so that `assert.deepEqual(seen, [...])` compares only the events.
  Object.defineProperty(seen, 'stop', { value: () => off(event, handler), enumerable: false });
  return seen;
}

function listenerMethods(target) {
  if (typeof target.bind === 'function' && typeof target.unbind === 'function') {
    return [target.bind.bind(target), target.unbind.bind(target)];
  }
  return [target.on.bind(target), target.off.bind(target)];
}

function waitUntilEvent(target, event, done, check, timeout, what) {
  return new Promise((resolve, reject) => {
    const [on, off] = listenerMethods(target);
    const handler = () => {
      try {
        check();
      } catch (err) {
        finish(err);
        return;
      }
      if (done()) finish();
    };
    const timer = setTimeout(() => finish(new Error(`timed out after ${timeout} ms waiting for ${what}`)), timeout);
    const finish = (err) => {
      clearTimeout(timer);
      off(event, handler);
      if (err) reject(err);
      else resolve();
    };
    on(event, handler);
    handler();
  });
}

/** Polls `fn` until it returns a truthy value, rejecting after the deadline. */
export async function until(fn, { timeout = DEFAULT_WAIT_MS, interval = 20, what = 'a condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await delay(interval);
  }
}

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The status code of a WebSocket upgrade to `url`: 101 when it opens, else the HTTP status. */
export function upgradeStatus(url, timeout = 5_000) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no answer to the upgrade of ${url} within ${timeout} ms`));
    }, timeout);
    ws.on('open', () => {
      clearTimeout(timer);
      ws.terminate();
      resolve(101);
    });
    ws.on('unexpected-response', (req, res) => {
      clearTimeout(timer);
      resolve(res.statusCode);
      req.destroy();
    });
    ws.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Raw WebSocket client
// ---------------------------------------------------------------------------------------------

/** Opens a raw WebSocket; resolves once the upgrade has succeeded. */
export function rawWs(url, timeout = DEFAULT_WAIT_MS) {
  const client = new RawClient(url);
  return client.opened(timeout).then(() => client);
}

/**
 * A WebSocket client that queues the frames it receives (parsed as JSON when they are JSON)
 * and lets a test take the next one that matches, with a deadline.
 */
export class RawClient {
  constructor(url) {
    this.url = url;
    this.ws = new WebSocket(url);
    this.queue = [];
    this.history = [];
    this.waiters = [];
    this.closeCode = null;
    this.closeReason = null;
    this.socketId = null;
    this.closedPromise = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        resolve({ code, reason: this.closeReason });
        for (const waiter of this.waiters.splice(0)) waiter.onClose();
      });
    });
    this.ws.on('message', (raw, isBinary) => this.receive(raw, isBinary));
    // Errors also surface as a close or a failed `opened()`; this keeps them from crashing.
    this.ws.on('error', (err) => {
      this.error = err;
    });
  }

  opened(timeout) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`WebSocket ${this.url} did not open within ${timeout} ms`)), timeout);
      this.ws.once('open', () => {
        clearTimeout(timer);
        resolve();
      });
      this.ws.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  receive(raw, isBinary) {
    const text = isBinary ? null : raw.toString();
    let frame;
    try {
      frame = text === null ? { binary: raw } : JSON.parse(text);
    } catch {
      frame = { text };
    }
    this.history.push(frame);
    const index = this.waiters.findIndex((w) => w.matches(frame));
    if (index >= 0) {
      const [waiter] = this.waiters.splice(index, 1);
      waiter.resolve(frame);
    } else {
      this.queue.push(frame);
    }
  }

  /** Sends an object as a JSON text frame, or a string as it is. */
  send(message) {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  /** Sends a binary frame. */
  sendBinary(bytes) {
    this.ws.send(bytes, { binary: true });
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /**
   * Takes the first queued or future frame that matches: an event name, a
   * `{ event, channel }` pattern, or a predicate. Frames that do not match stay queued.
   */
  next(match = () => true, timeout = DEFAULT_WAIT_MS) {
    const matches = toPredicate(match);
    const index = this.queue.findIndex(matches);
    if (index >= 0) return Promise.resolve(this.queue.splice(index, 1)[0]);
    return new Promise((resolve, reject) => {
      const fail = (why) => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`${why} waiting for a frame matching ${describeMatch(match)} on ${this.url}; frames seen: ${this.describeHistory()}`));
      };
      const timer = setTimeout(() => fail(`timed out after ${timeout} ms`), timeout);
      const waiter = {
        matches,
        resolve: (frame) => {
          clearTimeout(timer);
          resolve(frame);
        },
        onClose: () => {
          clearTimeout(timer);
          fail(`connection closed (code ${this.closeCode})`);
        },
      };
      if (this.closeCode !== null) {
        waiter.onClose();
        return;
      }
      this.waiters.push(waiter);
    });
  }

  /** Drops the frames queued so far that match, so that later `next` calls see only new ones. */
  discard(match = () => true) {
    const matches = toPredicate(match);
    this.queue = this.queue.filter((frame) => !matches(frame));
  }

  /** Resolves with `{ code, reason }` when the server closes the connection. */
  closed(timeout = DEFAULT_WAIT_MS) {
    return withTimeout(this.closedPromise, timeout, `close of ${this.url}; frames seen: ${this.describeHistory()}`);
  }

  /** Waits for `pusher:connection_established` and remembers the socket id. */
  async established(timeout) {
    const frame = await this.next('pusher:connection_established', timeout);
    const data = parseData(frame);
    this.socketId = data.socket_id;
    this.activityTimeout = data.activity_timeout;
    return data;
  }

  /** Checks that the connection still works: a `pusher:ping` gets a `pusher:pong`. */
  async ping(timeout) {
    this.send({ event: 'pusher:ping', data: {} });
    return this.next('pusher:pong', timeout);
  }

  /** Sends `pusher:subscribe` and resolves with the succeeded or error frame for that channel. */
  subscribe(channel, extra = {}, timeout) {
    this.send({ event: 'pusher:subscribe', data: { channel, ...extra } });
    return this.next(
      (f) =>
        f.channel === channel &&
        (f.event === 'pusher_internal:subscription_succeeded' || f.event === 'pusher:subscription_error'),
      timeout,
    );
  }

  /** Subscribes and fails unless the subscription succeeded. */
  async subscribeOk(channel, extra = {}, timeout) {
    const frame = await this.subscribe(channel, extra, timeout);
    if (frame.event !== 'pusher_internal:subscription_succeeded') {
      throw new Error(`subscription to ${channel} failed: ${JSON.stringify(frame)}`);
    }
    return frame;
  }

  /** Sends `pusher:signin` signed by `signer` and resolves with the reply frame. */
  signin(signer, userData, timeout) {
    const { auth, user_data } = signer.authenticateUser(this.socketId, userData);
    this.send({ event: 'pusher:signin', data: { auth, user_data } });
    return this.next((f) => f.event === 'pusher:signin_success' || f.event === 'pusher:error', timeout);
  }

  terminate() {
    this.ws.terminate();
  }

  close(code, reason) {
    this.ws.close(code, reason);
  }

  describeHistory() {
    const frames = this.history.map((f) => (f.binary ? `<binary ${f.binary.length} bytes>` : truncate(JSON.stringify(f))));
    const closed = this.closeCode !== null ? ` then close ${this.closeCode}` : '';
    return `[${frames.join(', ')}]${closed}`;
  }
}

function toPredicate(match) {
  if (typeof match === 'function') return match;
  if (typeof match === 'string') return (f) => f.event === match;
  return (f) => Object.entries(match).every(([k, v]) => f[k] === v);
}

function describeMatch(match) {
  if (typeof match === 'function') return match.toString();
  return JSON.stringify(match);
}

function truncate(text, max = 300) {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** Parses a frame's `data`, which Pusher sends as a JSON string for most events. */
export function parseData(frame) {
  if (typeof frame.data !== 'string') return frame.data;
  try {
    return JSON.parse(frame.data);
  } catch {
    return frame.data;
  }
}

/** Races a promise against a deadline. */
export function withTimeout(promise, timeout, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeout} ms waiting for ${what}`)), timeout);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------
// Names, signatures and raw HTTP
// ---------------------------------------------------------------------------------------------

let channelCounter = 0;

/** A channel name that no other test uses, so tests never see each other's traffic. */
export function uniqueChannel(prefix = '') {
  channelCounter += 1;
  return `${prefix}test-${process.pid}-${channelCounter}-${crypto.randomBytes(3).toString('hex')}`;
}

/**
 * The `data` fields of a `pusher:subscribe` for `channel`: `auth` (and `channel_data` for
 * presence) signed by the SDK for private and presence channels, nothing for public ones.
 */
export function subscribeData(server, socketId, channel, presence) {
  if (!/^(private-|presence-)/.test(channel)) return {};
  const signer = pusherServer(server, ENCRYPTED);
  const data = channel.startsWith('presence-') ? presence : undefined;
  const { auth, channel_data } = signer.authorizeChannel(socketId, channel, data);
  return channel_data === undefined ? { auth } : { auth, channel_data };
}

function hmacHex(secret, text) {
  return crypto.createHmac('sha256', secret).update(text).digest('hex');
}

/**
 * Sends an HTTP API request signed by hand, for inputs that the SDK refuses to build.
 * `path` is the full path (for example `/apps/app-id/events`); `body` is sent as it is when it
 * is a string and as JSON otherwise. `overrides` replaces signing inputs (secret, timestamp,
 * bodyMd5) to build bad requests; `headers` are added to the request. The answer is
 * `{ status, headers, text, json }`, with `headers` a fetch Headers object.
 */
export async function signedRequest(server, { method = 'POST', path: urlPath, query = {}, body, overrides = {}, headers: extraHeaders = {} }) {
  const { url, text } = signRequest(server, { method, path: urlPath, query, body, overrides });
  const headers = { ...(text === undefined ? {} : { 'content-type': 'application/json' }), ...extraHeaders };
  const res = await fetch(url, { method, body: text, headers, signal: AbortSignal.timeout(DEFAULT_WAIT_MS) });
  return readResponse(res);
}

/**
 * The signed URL of an HTTP API request, and its body as text, for callers that send it
 * themselves. Takes the same inputs as `signedRequest`.
 */
export function signRequest(server, { method = 'POST', path: urlPath, query = {}, body, overrides = {} }) {
  const text = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  const params = {
    auth_key: overrides.key ?? server.key,
    auth_timestamp: overrides.timestamp ?? Math.floor(Date.now() / 1000),
    auth_version: '1.0',
    ...query,
  };
  if (text !== undefined) params.body_md5 = overrides.bodyMd5 ?? crypto.createHash('md5').update(text).digest('hex');
  // The signature covers the keys in order with values as they are, like the SDK's Token.
  const queryString = Object.keys(params)
    .sort()
    .map((k) => `${k}=${params[k]}`)
    .join('&');
  const signature = hmacHex(overrides.secret ?? server.secret, [method, urlPath, queryString].join('\n'));
  return { url: `${server.baseUrl}${urlPath}?${queryString}&auth_signature=${signature}`, text };
}

/** Reads a fetch response into `{ status, text, json }`, where `json` is undefined if not JSON. */
export async function readResponse(res) {
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/**
 * Runs an SDK call that is expected to fail and returns `{ status, json, text }` from the
 * RequestError, failing if the call succeeded.
 */
export async function sdkFailure(promise) {
  let result;
  try {
    result = await promise;
  } catch (err) {
    if (err.status === undefined) throw err;
    let json;
    try {
      json = JSON.parse(err.body);
    } catch {
      json = undefined;
    }
    return { status: err.status, text: err.body, json };
  }
  throw new Error(`expected the request to fail, but it answered ${result.status}`);
}

/** Asserts an HTTP error: the status itself, and a body `{ error: <string>, code: <status> }`. */
export function assertHttpError(res, status) {
  assert.equal(res.status, status, `status; body: ${res.text}`);
  assert.equal(typeof res.json?.error, 'string', `body: ${res.text}`);
  assert.equal(res.json.code, status, `body: ${res.text}`);
}

/** The channel's subscription_count as the HTTP API reports it. */
export async function subscriptionCount(server, channel) {
  const res = await pusherServer(server).get({ path: `/channels/${channel}`, params: { info: 'subscription_count' } });
  return (await res.json()).subscription_count;
}

/** Parses an SDK response body as JSON. */
export async function sdkJson(promise) {
  const res = await promise;
  return { status: res.status, json: await res.json() };
}
