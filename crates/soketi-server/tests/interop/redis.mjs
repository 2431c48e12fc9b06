// A throwaway redis-server for the tests of the Redis adapter: one per test file (or per
// `describe`), on a free loopback port, never the machine's own Redis on 6379, with no
// persistence, killed when the test process exits.
//
// redis-server must be on PATH. Without it the tests are skipped, unless
// SOKETI_TEST_REQUIRE_ALL=1 (set by `cargo xtask test`), where they fail instead: `.ci/run`
// installs it.

import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { freePort, scratch } from './harness.mjs';

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
 * Resolves with:
 * - `port`;
 * - `stop()`: SIGTERM, SIGKILL after a grace period; resolves once it has exited;
 * - `restart()`: SIGKILL (no goodbye to its clients), then a new redis-server on the same
 *   port, resolving once that one answers PING;
 * - `logs()`: what the redis-servers of this handle printed (its tail).
 */
export async function startRedis({ port } = {}) {
  const bin = redisServerBinary();
  if (!bin) throw new Error(MISSING);
  const redisPort = port ?? (await freePort());

  let log = '';
  let current = null;

  const launch = async () => {
    const child = spawn(
      bin,
      ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
      { cwd: scratch(), stdio: ['ignore', 'pipe', 'pipe'] },
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
      await Promise.race([waitPong(redisPort), spawnError, earlyExit]);
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
    host: '127.0.0.1',
    get pid() {
      return current?.child.pid;
    },
    logs: () => log,
    stop: () => kill('SIGTERM'),
    async restart() {
      await kill('SIGKILL');
      log += `\n----- killed with SIGKILL; starting again on port ${redisPort} -----\n`;
      await launch();
    },
  };
}

/** Resolves once a raw `PING` on `port` answers `+PONG`, retrying until the deadline. */
async function waitPong(port) {
  const deadline = Date.now() + READY_DEADLINE_MS;
  let lastError = 'no answer yet';
  while (Date.now() < deadline) {
    try {
      if (await pingOnce(port)) return;
      lastError = 'an answer other than +PONG';
    } catch (err) {
      lastError = err.code ?? err.message;
    }
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
  }
  throw new Error(`PING on 127.0.0.1:${port} did not answer +PONG within ${READY_DEADLINE_MS} ms (${lastError})`);
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
