// The container image of `cargo xtask image`, run by podman as an operator would run it: it loads
// under the name the Kubernetes manifests use, starts, answers /ready, runs as the non-root user
// without capabilities, passes its health check, carries a pusher-js subscription and an SDK
// publish, and on `podman stop` (SIGTERM, the image's stop signal) closes its clients with 4200
// and exits 0 within the shutdown grace period.
//
// It needs an image, so the suite's glob (`*.test.mjs`) leaves it out: `cargo xtask image
// --check` and the `image` step of `cargo xtask test` run it with SOKETI_TEST_IMAGE (the archive)
// and SOKETI_TEST_IMAGE_NAME (the name it must load as). Without them, or without podman, it is
// skipped, unless SOKETI_TEST_REQUIRE_ALL=1, where it fails.
//
// podman keeps its images and containers in a scratch folder of this test (`--root`,
// `--runroot`, `--tmpdir`), so the test neither sees nor changes the machine's own, and leaves
// nothing behind. It runs containers with runc when runc is installed: crun 1.8 refuses hosts
// whose cgroup v1 controllers sit beside a cgroup2 mount with controllers ("cgroups in hybrid
// mode not supported"), as on the CI machines. The container's ulimits are this process's own:
// podman would raise them, which a process without CAP_SYS_RESOURCE may not do.

import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

import { APP, connected, freePort, httpRequest, pusherClient, pusherServer, record, subscribe, uniqueChannel, until, waitFor } from './harness.mjs';

const ARCHIVE = process.env.SOKETI_TEST_IMAGE;
const NAME = process.env.SOKETI_TEST_IMAGE_NAME;

// The image's defaults, as `cargo xtask image` writes them and deploy/Dockerfile repeats them.
const USER = '65532:65532';
const PORT = 6001;
const OPS_PORT = 9601;

const GRACE_MS = 2_000;
// After SIGTERM the server waits at most the grace period, then stops its tasks; podman then
// reaps the container and answers. 3 s leave room for a busy machine, and are far below
// STOP_TIMEOUT_S, after which podman would kill the process instead (exit code 137).
const EXIT_DEADLINE_MS = GRACE_MS + 3_000;
const STOP_TIMEOUT_S = 30;
const READY_DEADLINE_MS = 30_000;

/** The path of `program` on PATH (or in /usr/sbin, where Debian puts runc), or null. */
function which(program) {
  const found = spawnSync('sh', ['-c', `PATH="$PATH:/usr/sbin:/sbin" command -v ${program}`], { encoding: 'utf8' });
  return found.status === 0 ? found.stdout.trim() : null;
}

const PODMAN = which('podman');
const RUNC = which('runc');

const imageSkip = (() => {
  let why = null;
  if (!ARCHIVE || !NAME) why = 'SOKETI_TEST_IMAGE and SOKETI_TEST_IMAGE_NAME are not set: run `cargo xtask image --check`';
  else if (!PODMAN) why = 'podman is not installed (`.ci/run` installs it; or: apt-get install podman runc)';
  if (!why) return false;
  if (process.env.SOKETI_TEST_REQUIRE_ALL === '1') throw new Error(`SOKETI_TEST_REQUIRE_ALL=1, but ${why}`);
  return why;
})();

const run = promisify(execFile);

/**
 * This process's soft and hard limit named `name` in /proc/self/limits (`Max open files`), as
 * numbers (Infinity for `unlimited`).
 */
function limits(name) {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(name));
  const values = (line ?? '').slice(name.length).trim().split(/\s+/).slice(0, 2);
  if (values.length < 2) throw new Error(`no "${name}" in /proc/self/limits`);
  return values.map((v) => (v === 'unlimited' ? Infinity : Number(v)));
}

/**
 * The `--ulimit` options: the open files this process may have, and at most 4096 processes
 * (threads count as processes; the server runs a few dozen). podman's own defaults are higher
 * than these machines allow, and runc runs the container's first process under a process limit
 * podman lowered (32768 here), which it may not raise either.
 */
function ulimits() {
  const [files, filesMax] = limits('Max open files');
  const processes = Math.min(4096, limits('Max processes')[0]);
  const text = (n) => (n === Infinity ? '-1' : String(n));
  return ['--ulimit', `nofile=${text(files)}:${text(filesMax)}`, '--ulimit', `nproc=${processes}:${processes}`];
}

describe('the container image under podman', { skip: imageSkip }, () => {
  let store;
  let podmanArgs;
  let container;
  let server;

  /** Runs podman with the scratch storage; resolves with its stdout, or rejects with stderr. */
  async function podman(args, { timeout = 60_000 } = {}) {
    try {
      const { stdout } = await run(PODMAN, [...podmanArgs, ...args], { timeout, maxBuffer: 16 * 1024 * 1024 });
      return stdout;
    } catch (err) {
      throw new Error(`podman ${args.join(' ')} failed (${err.code ?? err.signal}): ${err.stderr || err.message}`);
    }
  }

  async function inspect(format) {
    return (await podman(['inspect', '--format', format, container])).trim();
  }

  async function dumpLogs(reason) {
    const logs = await podman(['logs', container]).catch((err) => err.message);
    process.stderr.write(`\n----- container output: ${reason} -----\n${logs}\n----- end of container output -----\n`);
  }

  before(async () => {
    store = mkdtempSync(path.join(os.tmpdir(), 'soketi-podman-'));
    podmanArgs = ['--root', path.join(store, 'root'), '--runroot', path.join(store, 'run'), '--tmpdir', path.join(store, 'tmp')];
    if (RUNC) podmanArgs.push('--runtime', RUNC);
    else process.stderr.write('image-check: no runc; podman runs containers with its default runtime\n');
  });

  after(async () => {
    if (container) await podman(['rm', '--force', '--time', '0', container]).catch((err) => process.stderr.write(`${err.message}\n`));
    await podman(['rmi', '--all', '--force']).catch((err) => process.stderr.write(`${err.message}\n`));
    rmSync(store, { recursive: true, force: true });
  });

  it(`loads as ${NAME}, with the user, ports, health check, stop signal and labels of deploy/Dockerfile`, async () => {
    const out = await podman(['load', '--input', ARCHIVE], { timeout: 300_000 });
    const loaded = out
      .split('\n')
      .map((line) => /^Loaded image(?:\(s\))?: (.+)$/.exec(line.trim())?.[1])
      .filter(Boolean)
      .flatMap((names) => names.split(','));
    // Docker Hub's prefix is the one Docker and Kubernetes give a name without a registry.
    assert.deepEqual(loaded, [`docker.io/${NAME}`], `podman load said:\n${out}`);

    const [image] = JSON.parse(await podman(['image', 'inspect', NAME]));
    const config = image.Config;
    assert.equal(config.User, USER);
    assert.deepEqual(Object.keys(config.ExposedPorts).sort(), [`${PORT}/tcp`, `${OPS_PORT}/tcp`]);
    assert.deepEqual(config.Entrypoint, ['/usr/local/bin/soketi-server']);
    assert.deepEqual(config.Cmd, ['start']);
    assert.equal(config.StopSignal, 'SIGTERM');
    assert.deepEqual(image.Healthcheck?.Test, ['CMD', '/usr/local/bin/soketi-server', 'health'], 'podman reads the health check');
    const labels = config.Labels;
    const version = labels['org.opencontainers.image.version'];
    assert.ok(NAME.endsWith(`:${version}`) || NAME.endsWith(`:${version}-debug`), `tag of ${NAME} vs version ${version}`);
    assert.equal(labels['org.opencontainers.image.licenses'], 'MIT OR Apache-2.0');
    assert.match(labels['org.opencontainers.image.source'], /^https:\/\//);
    assert.match(labels['org.opencontainers.image.revision'], /^([0-9a-f]{40}|unknown)$/);
  });

  it('starts with the restrictions of the Kubernetes manifests and answers /ready on its published ports', async () => {
    const port = await freePort();
    const opsPort = await freePort();
    container = `soketi-image-check-${process.pid}`;
    await podman([
      'run', '--detach', '--name', container,
      ...ulimits(),
      // The manifests' securityContext: a read-only root, no capabilities, no privilege gain.
      '--read-only', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges',
      '--publish', `127.0.0.1:${port}:${PORT}`, '--publish', `127.0.0.1:${opsPort}:${OPS_PORT}`,
      '--env', `SOKETI_SHUTDOWN_GRACE_PERIOD=${GRACE_MS}`,
      NAME,
    ]);
    server = { ...APP, host: '127.0.0.1', port, tls: null };
    const ready = `http://127.0.0.1:${opsPort}/ready`;
    let last = 'no answer yet';
    try {
      await until(
        async () => {
          if ((await inspect('{{.State.Running}}')) !== 'true') throw new Error(`the container stopped (${await inspect('{{.State.Status}} {{.State.ExitCode}}')})`);
          try {
            const res = await httpRequest(ready, { timeout: 1_000 });
            last = `${res.status} ${res.text}`;
            return res.status === 200;
          } catch (err) {
            last = err.code ?? err.message;
            return false;
          }
        },
        { timeout: READY_DEADLINE_MS, interval: 100, what: `GET ${ready} to answer 200` },
      );
    } catch (err) {
      await dumpLogs('not ready');
      throw new Error(`${err.message}; the last answer: ${last}`);
    }
  });

  it('runs the server as the image user, without capabilities', async () => {
    const pid = await inspect('{{.State.Pid}}');
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1].split(/\s+/);
    const [uid, gid] = USER.split(':');
    assert.deepEqual(field('Uid'), [uid, uid, uid, uid], 'real, effective, saved and filesystem uid');
    assert.deepEqual(field('Gid'), [gid, gid, gid, gid], 'real, effective, saved and filesystem gid');
    assert.deepEqual(field('CapEff'), ['0000000000000000'], 'effective capabilities');
    const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    assert.deepEqual(command, ['/usr/local/bin/soketi-server', 'start']);
  });

  it('passes its health check (`soketi-server health` inside the image)', async () => {
    // podman runs it on demand here; its timer needs systemd, which it only says it lacks.
    await podman(['healthcheck', 'run', container]);
    const health = JSON.parse(await inspect('{{json .State.Health}}'));
    assert.equal(health.Status, 'healthy', JSON.stringify(health));
    const last = health.Log.at(-1);
    assert.equal(last.ExitCode, 0, JSON.stringify(last));
    assert.match(last.Output, /\/ready: ready/);
  });

  it('delivers an event published through the SDK to a pusher-js subscriber', async () => {
    const client = pusherClient(server);
    try {
      await connected(client);
      const channel = uniqueChannel('image-');
      const { channel: subscribed } = await subscribe(client, channel);
      const received = waitFor(subscribed, 'image-event');
      await pusherServer(server).trigger(channel, 'image-event', { from: 'sdk', via: NAME });
      assert.deepEqual(await received, { from: 'sdk', via: NAME });
    } finally {
      client.disconnect();
    }
  });

  it(`on podman stop closes clients with 4200 and exits 0 within the ${GRACE_MS} ms grace period`, async () => {
    const client = pusherClient(server);
    try {
      await connected(client);
      await subscribe(client, uniqueChannel('image-'));
      const errors = record(client.connection, 'error');
      const start = Date.now();
      const stopped = podman(['stop', '--time', String(STOP_TIMEOUT_S), container], { timeout: (STOP_TIMEOUT_S + 30) * 1_000 });
      stopped.catch(() => {});
      await until(() => errors.some((e) => e?.data?.code === 4200), {
        timeout: EXIT_DEADLINE_MS,
        what: `pusher-js to report code 4200 (errors: ${JSON.stringify(errors)})`,
      });
      await stopped;
      const elapsed = Date.now() - start;
      const exitCode = await inspect('{{.State.ExitCode}}');
      if (exitCode !== '0') await dumpLogs(`exit code ${exitCode}`);
      assert.equal(exitCode, '0', 'a clean exit, not a kill after the stop timeout (137)');
      assert.ok(elapsed <= EXIT_DEADLINE_MS, `the container stopped ${elapsed} ms after SIGTERM`);
    } finally {
      client.disconnect();
    }
  });
});
