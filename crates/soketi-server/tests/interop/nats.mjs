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

/** Starts nats-server on a free loopback port and waits until it takes connections. */
export async function startNats() {
  const bin = natsServerBinary();
  if (!bin) throw new Error(MISSING);
  const port = await freePort();
  let logs = '';
  const child = spawn(bin, ['-a', '127.0.0.1', '-p', String(port)], { cwd: scratch(), stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(child);
  for (const stream of [child.stdout, child.stderr]) stream.on('data', (chunk) => (logs = (logs + chunk).slice(-32_768)));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const deadline = Date.now() + 10_000;
  while (!(await connectable(port))) {
    if (Date.now() > deadline) throw new Error(`nats-server did not start on ${port}:\n${logs}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return {
    port,
    logs: () => logs,
    async stop() {
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
      child.kill('SIGKILL');
      liveChildren.delete(child);
    },
  };
}
