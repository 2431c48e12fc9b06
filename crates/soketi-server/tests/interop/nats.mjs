// A throwaway nats-server for the tests of the NATS adapter: on a free loopback port, never the
// machine's own on 4222, killed when the test process exits. It has the same shape as
// redis.mjs's `startRedis`, so the fleet suite runs over either bus.
//
// nats-server must be on PATH (or in /usr/sbin). Without it the tests are skipped, unless
// SOKETI_TEST_REQUIRE_ALL=1, where they fail instead: `.ci/run` installs it.

import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { freePort, scratch } from './harness.mjs';

const MISSING =
  'nats-server is required for the NATS adapter tests but is not on PATH; ' +
  '`.ci/run` installs it (or: apt-get install nats-server)';

const liveChildren = new Set();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

/** The path of nats-server, or null. */
export function natsServerBinary() {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/bin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = path.join(dir, 'nats-server');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory.
    }
  }
  return null;
}

/** The `skip` option for a `describe` that needs nats-server (see redis.mjs's redisSkip). */
export function natsSkip() {
  if (natsServerBinary()) return false;
  if (process.env.SOKETI_TEST_REQUIRE_ALL === '1') return false;
  return MISSING;
}

function connectable(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Starts nats-server on a free loopback port (or `port`) and waits until it takes connections.
 * Options, all optional:
 * - `user` and `pass`: the credentials it requires (`--user`, `--pass`);
 * - `token`: the token it requires (`--auth`);
 * - `monitor: true`: its HTTP monitoring on another free loopback port (`-m`), for
 *   `subscriptions()`.
 * Resolves with:
 * - `port`, and `monitorPort` (or null);
 * - `stop()`: SIGTERM, SIGKILL after a grace period; resolves once it has exited;
 * - `restart(whileDown)`: SIGKILL (no goodbye to its clients), then `await whileDown()` if
 *   given, then a new nats-server on the same port with the same options, resolving once that
 *   one takes connections;
 * - `logs()`: what the nats-servers of this handle printed (its tail);
 * - `subscriptions()`: the subjects of the clients' subscriptions (`/subsz?subs=1`, without the
 *   server's own `$SYS.` ones), sorted.
 */
export async function startNats({ port: fixedPort, user, pass, token, monitor = false } = {}) {
  const bin = natsServerBinary();
  if (!bin) throw new Error(MISSING);
  const port = fixedPort ?? (await freePort());
  const monitorPort = monitor ? await freePort() : null;
  const args = ['-a', '127.0.0.1', '-p', String(port)];
  if (user !== undefined) args.push('--user', user);
  if (pass !== undefined) args.push('--pass', pass);
  if (token !== undefined) args.push('--auth', token);
  if (monitorPort !== null) args.push('-m', String(monitorPort));

  let logs = '';
  let current = null;
  const launch = async () => {
    const child = spawn(bin, args, { cwd: scratch(), stdio: ['ignore', 'pipe', 'pipe'] });
    liveChildren.add(child);
    for (const stream of [child.stdout, child.stderr]) stream.on('data', (chunk) => (logs = (logs + chunk).slice(-32_768)));
    let exitInfo = null;
    const exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        liveChildren.delete(child);
        exitInfo = { code, signal };
        resolve(exitInfo);
      });
    });
    current = { child, exited };
    const deadline = Date.now() + 10_000;
    while (!(await connectable(port))) {
      if (exitInfo) throw new Error(`nats-server exited before taking connections on ${port} (${JSON.stringify(exitInfo)}):\n${logs}`);
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`nats-server did not start on ${port}:\n${logs}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  };
  const kill = async (signal) => {
    const { child, exited } = current;
    child.kill(signal);
    const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    try {
      return await exited;
    } finally {
      clearTimeout(killer);
    }
  };

  await launch();
  return {
    port,
    monitorPort,
    logs: () => logs,
    async stop() {
      await kill('SIGTERM');
    },
    async restart(whileDown) {
      await kill('SIGKILL');
      logs += `\n----- killed with SIGKILL; starting again on port ${port} -----\n`;
      if (whileDown) await whileDown();
      await launch();
    },
    async subscriptions() {
      if (monitorPort === null) throw new Error('subscriptions() needs startNats({ monitor: true })');
      const res = await fetch(`http://127.0.0.1:${monitorPort}/subsz?subs=1&limit=100000`, { signal: AbortSignal.timeout(5_000) });
      const body = await res.json();
      return (body.subscriptions_list ?? [])
        .map((sub) => sub.subject)
        .filter((subject) => !subject.startsWith('$SYS.'))
        .sort();
    },
  };
}
