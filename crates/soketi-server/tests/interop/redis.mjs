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
 * Options, all optional:
 * - `password`: the default user's password (`--requirepass`);
 * - `users`: ACL users, `[{ name, password, rules }]`, each `--user <name> reset on ><password> <rules>`
 *   (`rules` defaults to `['~*', '&*', '+@all']`: every key, channel and command); a user named
 *   `default` replaces the default one (`{ name: 'default', off: true }` turns it off);
 * - `admin`: `{ user, password }` that `command()` and readiness log in with (by default the
 *   default user with `password`, or none).
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
export async function startRedis({ port, password, users = [], admin } = {}) {
  const bin = redisServerBinary();
  if (!bin) throw new Error(MISSING);
  const redisPort = port ?? (await freePort());
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
        ...['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
        ...authArgs,
      ],
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
