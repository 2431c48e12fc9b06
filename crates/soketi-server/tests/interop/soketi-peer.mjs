// soketi 1.6.1 itself, the server this one replaces, for the tests that run it beside this
// server (redis-beside-soketi.test.mjs). It is installed with `npm install` from the recipe in
// `peers/soketi/package.json` beside this file (or `$SOKETI_BENCH_PEERS/soketi`, as for the
// bench: a package.json that pins soketi and swaps its uWebSockets.js, which is fetched from a
// Git host, for the same library on the npm registry). The bench's copy under
// `target/bench-peers/soketi` is used when it is there, else the tests install their own under
// `target/interop-peers/soketi` (once; it needs the npm registry, as the suite's own `npm ci`
// does). `SOKETI_REF` names another install.
//
// When the install fails, the tests are skipped, unless SOKETI_TEST_REQUIRE_ALL=1, where they
// fail with the reason instead.
//
// soketi starts its UDP discovery on every boot, whatever the adapter, and broadcasts to
// 255.255.255.255 by default: it is always started with unicast discovery to 127.0.0.1, so
// that nothing leaves loopback.

import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { APP, REPO_ROOT, freePort, scratch, until } from './harness.mjs';

// The recipe: the bench's peers folder when it is named, else the project's own.
const RECIPE = process.env.SOKETI_BENCH_PEERS
  ? path.join(process.env.SOKETI_BENCH_PEERS, 'soketi')
  : path.join(path.dirname(fileURLToPath(import.meta.url)), 'peers', 'soketi');
const SERVER_JS = 'node_modules/@soketi/soketi/bin/server.js';
const INSTALL_TIMEOUT_MS = 10 * 60_000;
const READY_DEADLINE_MS = 30_000;
const MAX_LOG_CHARS = 64 * 1024;

// Every soketi still running when the test process exits is killed.
const liveChildren = new Set();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

/**
 * Finds soketi, installing it when needed. Resolves with `{ dir }` (the folder whose
 * node_modules holds it) or `{ missing }` (why it cannot be had).
 */
export async function findSoketi() {
  const candidates = [process.env.SOKETI_REF, path.join(REPO_ROOT, 'target/bench-peers/soketi'), path.join(REPO_ROOT, 'target/interop-peers/soketi')];
  for (const dir of candidates) {
    if (dir && existsSync(path.join(dir, SERVER_JS))) return { dir };
  }
  if (process.env.SOKETI_REF) return { missing: `SOKETI_REF=${process.env.SOKETI_REF} holds no ${SERVER_JS}` };
  const recipe = path.join(RECIPE, 'package.json');
  if (!existsSync(recipe)) return { missing: `soketi's recipe ${recipe} is absent, so soketi cannot be installed` };
  const dir = path.join(REPO_ROOT, 'target/interop-peers/soketi');
  mkdirSync(dir, { recursive: true });
  copyFileSync(recipe, path.join(dir, 'package.json'));
  const npm = spawnSync('npm', ['install', '--no-audit', '--no-fund'], { cwd: dir, encoding: 'utf8', timeout: INSTALL_TIMEOUT_MS });
  if (npm.status !== 0 || !existsSync(path.join(dir, SERVER_JS))) {
    const why = npm.error?.message ?? `exit ${npm.status}: ${(npm.stderr ?? '').slice(-2000)}`;
    return { missing: `installing soketi in ${dir} with npm failed (${why})` };
  }
  return { dir };
}

/** The `skip` option for a `describe` that needs soketi (see `redisSkip`). */
export function soketiSkip(found) {
  if (!found.missing) return false;
  if (process.env.SOKETI_TEST_REQUIRE_ALL === '1') return false;
  return found.missing;
}

function getText(url, timeout = 2_000) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url}`)));
    req.on('error', reject);
  });
}

/**
 * Starts soketi from `found.dir` on loopback with the default app (`APP`) and `env` on top
 * (soketi's own `SOKETI_*` names), and waits until it answers on `/`. Resolves with a server
 * object that the harness's `Scope`, `pusherServer` and `pusherClient` accept, plus `logs()`,
 * `exitInfo()`, `alive()` (whether it still answers) and `stop()` (SIGKILL: soketi takes 15 to
 * 20 s to exit on SIGTERM, and nothing of it is kept).
 */
export async function startSoketi(found, env = {}) {
  if (found.missing) throw new Error(`SOKETI_TEST_REQUIRE_ALL=1, but ${found.missing}`);
  const [port, metricsPort, clusterPort] = [await freePort(), await freePort(), await freePort()];
  const childEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('SOKETI_')) childEnv[name] = value;
  }
  Object.assign(childEnv, {
    NO_COLOR: '1',
    SOKETI_HOST: '127.0.0.1',
    SOKETI_PORT: String(port),
    SOKETI_METRICS_HOST: '127.0.0.1',
    SOKETI_METRICS_SERVER_PORT: String(metricsPort),
    SOKETI_DEFAULT_APP_ID: APP.appId,
    SOKETI_DEFAULT_APP_KEY: APP.key,
    SOKETI_DEFAULT_APP_SECRET: APP.secret,
    // Not optional (../shared/peers/soketi/README.md): keeps discovery on loopback.
    SOKETI_CLUSTER_UNICAST_ADDRESSES: '["127.0.0.1"]',
    SOKETI_CLUSTER_PORT: String(clusterPort),
    ...env,
  });
  const child = spawn(process.execPath, [path.join(found.dir, SERVER_JS), 'start'], {
    cwd: scratch(),
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  liveChildren.add(child);
  let log = '';
  const append = (chunk) => {
    log += chunk;
    if (log.length > MAX_LOG_CHARS) log = log.slice(-MAX_LOG_CHARS);
  };
  child.stdout.setEncoding('utf8').on('data', append);
  child.stderr.setEncoding('utf8').on('data', append);
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exitInfo = { code, signal };
      liveChildren.delete(child);
      resolve(exitInfo);
    });
  });
  const baseUrl = `http://127.0.0.1:${port}`;
  const server = {
    host: '127.0.0.1',
    port,
    pathPrefix: '',
    tls: null,
    appId: APP.appId,
    key: APP.key,
    secret: APP.secret,
    baseUrl,
    wsUrl(key = APP.key, query = 'protocol=7&client=js&version=8.4.0&flash=false') {
      return `ws://127.0.0.1:${port}/app/${key}${query ? `?${query}` : ''}`;
    },
    logs: () => log,
    exitInfo: () => exitInfo,
    async alive() {
      if (exitInfo) return false;
      try {
        return (await getText(`${baseUrl}/`)).status === 200;
      } catch {
        return false;
      }
    },
    async stop() {
      if (exitInfo) return exitInfo;
      child.kill('SIGKILL');
      return exited;
    },
  };
  try {
    await until(() => server.alive(), { timeout: READY_DEADLINE_MS, interval: 100, what: 'soketi to answer on /' });
  } catch (err) {
    await server.stop();
    throw new Error(`soketi did not become ready: ${err.message}\nIts output:\n${log}`);
  }
  return server;
}
