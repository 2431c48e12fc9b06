// Helpers for the tests of the SQL app managers (`SOKETI_APP_MANAGER_DRIVER=postgres|mysql`):
// the machine's PostgreSQL (127.0.0.1:5432, trust auth, user `postgres`) and MariaDB
// (127.0.0.1:3306, user `root`, empty password), driven through their CLIs (`psql`, `mysql`);
// a throwaway database per test file; soketi's `apps` table; and a TCP proxy between the server
// and the database that a test can cut, turn into a black hole, and restore, so that "the
// database goes away" without stopping the machine's database.
//
// Each test file creates its own database, `soketi_test_appmgr_<pid>_<hex>`, and drops it in
// `after` (and at process exit if `after` did not run). Before it creates one, it drops the
// databases of that pattern whose pid is no longer a live process (crashed runs); it never
// touches any other database.
//
// Without a reachable database the tests are skipped (`sqlSkip(reason)`), except with
// SOKETI_TEST_REQUIRE_ALL=1, where they fail with the reason.

import { execFile, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import net from 'node:net';

const CLI_TIMEOUT_MS = 10_000;
const DATABASE_RE = /^soketi_test_appmgr_(\d+)_[0-9a-f]+$/;

/** The two backends: how to reach them, run SQL, and spell their types. */
export const BACKENDS = Object.freeze({
  postgres: Object.freeze({
    id: 'postgres',
    label: 'PostgreSQL',
    driver: 'postgres',
    host: '127.0.0.1',
    port: 5432,
    user: 'postgres',
    adminDatabase: 'postgres',
    envPrefix: 'SOKETI_DB_POSTGRES_',
    tableEnv: 'SOKETI_APP_MANAGER_POSTGRES_TABLE',
    booleanType: 'boolean',
    ident: (name) => `"${name}"`,
    command(database, sql, port = this.port) {
      return [
        'psql',
        ['-h', this.host, '-p', String(port), '-U', this.user, '-d', database, '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', sql],
        { PGCONNECT_TIMEOUT: '3' },
      ];
    },
    listDatabases: 'SELECT datname FROM pg_database',
    // WITH (FORCE) ends connections a killed server might still hold (PostgreSQL 13+).
    dropDatabase: (name) => `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`,
    createDatabase: (name) => `CREATE DATABASE "${name}"`,
  }),
  mysql: Object.freeze({
    id: 'mysql',
    label: 'MariaDB (MySQL driver)',
    driver: 'mysql',
    host: '127.0.0.1',
    port: 3306,
    user: 'root',
    adminDatabase: 'mysql',
    envPrefix: 'SOKETI_DB_MYSQL_',
    tableEnv: 'SOKETI_APP_MANAGER_MYSQL_TABLE',
    booleanType: 'tinyint(1)',
    ident: (name) => `\`${name}\``,
    command(database, sql, port = this.port) {
      return [
        'mysql',
        ['-h', this.host, '-P', String(port), '-u', this.user, '--connect-timeout=3', '-N', '-B', '-D', database, '-e', sql],
        {},
      ];
    },
    listDatabases: 'SHOW DATABASES',
    dropDatabase: (name) => `DROP DATABASE IF EXISTS \`${name}\``,
    createDatabase: (name) => `CREATE DATABASE \`${name}\``,
  }),
});

/** Runs `sql` in `database` through the backend's CLI; resolves with stdout's lines. */
export function runSql(backend, database, sql) {
  const [cmd, args, extraEnv] = backend.command(database, sql);
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env: { ...process.env, ...extraEnv }, timeout: CLI_TIMEOUT_MS }, (err, stdout, stderr) => {
      if (err) {
        const why = err.code === 'ENOENT' ? `${cmd} is not installed` : (stderr || err.message).trim();
        reject(new Error(`${backend.label}: ${cmd} failed on ${JSON.stringify(sql.slice(0, 200))}: ${why}`));
        return;
      }
      resolve(stdout.split('\n').filter((line) => line.trim() !== ''));
    });
  });
}

/** Null when the backend answers `SELECT 1`, and why not otherwise. */
export async function probe(backend) {
  try {
    const lines = await runSql(backend, backend.adminDatabase, 'SELECT 1');
    return lines[0]?.trim() === '1' ? null : `${backend.label} answered ${JSON.stringify(lines)} to SELECT 1`;
  } catch (err) {
    return `${backend.label} is not reachable at ${backend.host}:${backend.port} (${err.message})`;
  }
}

/**
 * The `skip` option of a `describe` that needs the backend, given `probe`'s answer: false when
 * it is there or when SOKETI_TEST_REQUIRE_ALL=1 (the tests then fail with the reason).
 */
export function sqlSkip(reason) {
  if (!reason) return false;
  if (process.env.SOKETI_TEST_REQUIRE_ALL === '1') return false;
  return `${reason} (SOKETI_TEST_REQUIRE_ALL=1 makes this a failure)`;
}

function pidIsAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

/** Drops the databases of this helper's pattern that a run which is no longer alive left. */
export async function dropLeftovers(backend) {
  const names = await runSql(backend, backend.adminDatabase, backend.listDatabases);
  for (const name of names.map((n) => n.trim())) {
    const match = DATABASE_RE.exec(name);
    if (!match || pidIsAlive(Number(match[1]))) continue;
    await runSql(backend, backend.adminDatabase, backend.dropDatabase(name));
  }
}

/**
 * Creates a database of its own for this test process and resolves with
 * `{ name, sql(text), drop() }`; it is also dropped at process exit if `drop` was not called.
 */
export async function createDatabase(backend) {
  const name = `soketi_test_appmgr_${process.pid}_${crypto.randomBytes(4).toString('hex')}`;
  await runSql(backend, backend.adminDatabase, backend.createDatabase(name));
  let dropped = false;
  const onExit = () => {
    if (dropped) return;
    const [cmd, args, extraEnv] = backend.command(backend.adminDatabase, backend.dropDatabase(name));
    try {
      execFileSync(cmd, args, { env: { ...process.env, ...extraEnv }, timeout: CLI_TIMEOUT_MS, stdio: 'ignore' });
    } catch {
      // The next run drops it as a leftover.
    }
  };
  process.on('exit', onExit);
  return {
    name,
    sql: (text) => runSql(backend, name, text),
    async drop() {
      if (dropped) return;
      await runSql(backend, backend.adminDatabase, backend.dropDatabase(name));
      dropped = true;
      process.off('exit', onExit);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// soketi's apps table
// ---------------------------------------------------------------------------------------------

/** The columns of soketi's table, in order, with a row's value when a test does not set it. */
export const APP_COLUMNS = Object.freeze({
  id: undefined,
  key: undefined,
  secret: undefined,
  max_connections: -1,
  enable_client_messages: false,
  enabled: true,
  max_backend_events_per_sec: -1,
  max_client_events_per_sec: -1,
  max_read_req_per_sec: -1,
  webhooks: null,
  max_presence_members_per_channel: null,
  max_presence_member_size_in_kb: null,
  max_channel_name_length: null,
  max_event_channels_at_once: null,
  max_event_name_length: null,
  max_event_payload_in_kb: null,
  max_event_batch_size: null,
  enable_user_authentication: false,
});

/** `CREATE TABLE` for soketi's layout, in the backend's dialect. */
export function createAppsTable(backend, table = 'apps') {
  const q = backend.ident;
  const bool = backend.booleanType;
  const columns = [
    `${q('id')} varchar(255) NOT NULL PRIMARY KEY`,
    `${q('key')} varchar(255) NOT NULL`,
    `${q('secret')} varchar(255) NOT NULL`,
    `${q('max_connections')} integer NOT NULL`,
    `${q('enable_client_messages')} ${bool} NOT NULL`,
    `${q('enabled')} ${bool} NOT NULL`,
    `${q('max_backend_events_per_sec')} integer NOT NULL`,
    `${q('max_client_events_per_sec')} integer NOT NULL`,
    `${q('max_read_req_per_sec')} integer NOT NULL`,
    `${q('webhooks')} json NULL`,
    ...[
      'max_presence_members_per_channel',
      'max_presence_member_size_in_kb',
      'max_channel_name_length',
      'max_event_channels_at_once',
      'max_event_name_length',
      'max_event_payload_in_kb',
      'max_event_batch_size',
    ].map((c) => `${q(c)} integer NULL`),
    `${q('enable_user_authentication')} ${bool} NOT NULL`,
  ];
  return `CREATE TABLE ${q(table)} (${columns.join(', ')})`;
}

/** A SQL literal for a test's own value (strings are quoted, objects become JSON text). */
function literal(value) {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'boolean') return value ? 'TRUE' : 'FALSE';
  if (typeof value === 'number') return String(value);
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return `'${text.replaceAll("'", "''")}'`;
}

/** `INSERT` of one app row: `app` has id, key, secret and any column to set. */
export function insertApp(backend, table, app) {
  const row = { ...APP_COLUMNS, ...app };
  const names = Object.keys(APP_COLUMNS);
  return `INSERT INTO ${backend.ident(table)} (${names.map(backend.ident).join(', ')}) VALUES (${names.map((n) => literal(row[n])).join(', ')})`;
}

/** `UPDATE` of some columns of the row with this id. */
export function updateApp(backend, table, id, changes) {
  const sets = Object.entries(changes).map(([column, value]) => `${backend.ident(column)} = ${literal(value)}`);
  return `UPDATE ${backend.ident(table)} SET ${sets.join(', ')} WHERE ${backend.ident('id')} = ${literal(id)}`;
}

// ---------------------------------------------------------------------------------------------
// A proxy that makes the database go away
// ---------------------------------------------------------------------------------------------

/**
 * Resets a socket (RST), or only destroys it once it has begun a graceful shutdown (`end()`,
 * which Node calls itself when the peer ends): libuv refuses to reset a socket that is shutting
 * down, and Node then leaves its handle open, so that the test process spins at exit instead of
 * ending (https://github.com/libp2p/js-libp2p/pull/3597 describes the same race).
 */
function reset(socket) {
  if (socket.destroyed) return;
  if (socket.writableEnded) socket.destroy();
  else socket.resetAndDestroy();
}

/**
 * A TCP proxy on a free loopback port in front of `targetHost:targetPort`. Resolves with:
 * - `port`, `mode()` (`open`, `cut` or `blackhole`);
 * - `cut()`: resets every connection and resets every new one at once (the database is gone);
 * - `blackhole()`: keeps every connection and accepts new ones, but forwards nothing (the
 *   database hangs);
 * - `restore()`: forwards again (connections of a black hole are reset first: their protocol
 *   state is lost);
 * - `stats`: `{ accepted, refused, bytesUp, bytesDown }`, bytes from the server to the database
 *   (`bytesUp`) and back, counted only while open;
 * - `close()`.
 */
export function startProxy(targetPort, targetHost = '127.0.0.1') {
  let mode = 'open';
  const pairs = new Set();
  const stats = { accepted: 0, refused: 0, bytesUp: 0, bytesDown: 0 };

  const destroyPair = (pair) => {
    pairs.delete(pair);
    reset(pair.client);
    pair.upstream?.destroy();
  };

  const server = net.createServer((client) => {
    client.on('error', () => {});
    if (mode === 'cut') {
      stats.refused += 1;
      reset(client);
      return;
    }
    stats.accepted += 1;
    const pair = { client, upstream: null };
    pairs.add(pair);
    const end = () => {
      if (!pairs.has(pair)) return;
      pairs.delete(pair);
      client.destroy();
      pair.upstream?.destroy();
    };
    client.on('close', end);
    // A black hole accepts the connection and never answers.
    if (mode === 'blackhole') return;
    const upstream = net.connect(targetPort, targetHost);
    pair.upstream = upstream;
    upstream.on('error', () => {});
    upstream.on('close', end);
    client.on('data', (chunk) => {
      if (mode !== 'open') return;
      stats.bytesUp += chunk.length;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (mode !== 'open') return;
      stats.bytesDown += chunk.length;
      client.write(chunk);
    });
  });

  return new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: server.address().port,
        stats,
        mode: () => mode,
        cut() {
          mode = 'cut';
          for (const pair of [...pairs]) destroyPair(pair);
        },
        blackhole() {
          mode = 'blackhole';
        },
        restore() {
          if (mode === 'blackhole') for (const pair of [...pairs]) destroyPair(pair);
          mode = 'open';
        },
        close() {
          mode = 'cut';
          for (const pair of [...pairs]) destroyPair(pair);
          return new Promise((done) => server.close(() => done()));
        },
      });
    });
  });
}
