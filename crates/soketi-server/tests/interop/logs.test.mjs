// Log output: the start-up line, JSON lines with SOKETI_LOG_FORMAT=json, and debug-level lines
// with SOKETI_DEBUG=true.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { subscribe, uniqueChannel, until, useServer } from './harness.mjs';

/** The complete (newline-terminated) non-empty lines the server has written to stderr. */
function stderrLines(server) {
  const text = server.stderr();
  const complete = text.slice(0, text.lastIndexOf('\n') + 1);
  return complete.split('\n').filter((line) => line.trim() !== '');
}

/** Parses a log line as a JSON object, or returns undefined. */
function jsonLine(line) {
  try {
    const value = JSON.parse(line);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** The level field of a JSON log line, whatever its case. */
function levelOf(entry) {
  const key = Object.keys(entry).find((k) => k.toLowerCase() === 'level');
  return key === undefined ? undefined : String(entry[key]);
}

/** Connects pusher-js, subscribes and publishes, so that the server has things to log. */
async function someTraffic(scope) {
  const name = uniqueChannel();
  const client = await scope.connectedPusher();
  await subscribe(client, name);
  await scope.sdk().trigger(name, 'logged', {});
}

describe('the default text logs', () => {
  const scope = useServer();

  it('name the addresses in the start-up line, as docs/getting-started.md shows it', async () => {
    const { host, port, metricsHost, metricsPort } = scope.server;
    // The server answers /ready as soon as it listens; the line follows a moment later.
    const line = await until(() => stderrLines(scope.server).find((l) => l.includes('listening on')), {
      timeout: 3_000,
      what: 'the start-up line',
    });
    assert.match(line, /INFO/, line);
    assert.ok(line.includes(`listening on ${host}:${port}, operations on ${metricsHost}:${metricsPort}`), line);
  });
});

describe('SOKETI_LOG_FORMAT=json', () => {
  const scope = useServer({ SOKETI_LOG_FORMAT: 'json' });

  it('writes every stderr line as a JSON object with a level, from the start-up line on', async () => {
    await someTraffic(scope);
    const lines = stderrLines(scope.server);
    assert.ok(lines.length >= 1, 'the server logs at least its start-up line');
    const first = jsonLine(lines[0]);
    assert.ok(first, `the start-up line is JSON: ${lines[0]}`);
    assert.ok(levelOf(first), `the start-up line has a level: ${lines[0]}`);
    for (const line of lines) assert.ok(jsonLine(line), `a stderr line is not a JSON object: ${line}`);
  });
});

describe('--log-format json over SOKETI_LOG_FORMAT=text', () => {
  const scope = useServer({ SOKETI_LOG_FORMAT: 'text' }, { args: ['--log-format', 'json', 'start'] });

  it('writes JSON lines: the command line wins over the environment', async () => {
    await someTraffic(scope);
    const lines = stderrLines(scope.server);
    assert.ok(lines.length >= 1, 'the server logs at least its start-up line');
    for (const line of lines) assert.ok(jsonLine(line), `a stderr line is not a JSON object: ${line}`);
  });
});

describe('SOKETI_DEBUG=true', () => {
  const scope = useServer({ SOKETI_DEBUG: 'true' });

  it('logs debug-level lines once a client connects', async () => {
    await someTraffic(scope);
    await until(() => /DEBUG/.test(scope.server.stderr()), {
      timeout: 3_000,
      what: "a DEBUG line in the server's stderr (its output follows the failure)",
    });
  });
});

describe('SOKETI_DEBUG=true with SOKETI_LOG_FORMAT=json', () => {
  const scope = useServer({ SOKETI_DEBUG: 'true', SOKETI_LOG_FORMAT: 'json' });

  it('logs JSON lines with level DEBUG once a client connects', async () => {
    await someTraffic(scope);
    await until(
      () => stderrLines(scope.server).some((line) => levelOf(jsonLine(line) ?? {})?.toUpperCase() === 'DEBUG'),
      { timeout: 3_000, what: 'a JSON line with level DEBUG' },
    );
    for (const line of stderrLines(scope.server)) assert.ok(jsonLine(line), `a stderr line is not a JSON object: ${line}`);
  });
});
