// TLS: with SOKETI_SSL_CERT and SOKETI_SSL_KEY the server serves wss:// and https:// with a
// self-signed certificate that the test generates with the openssl CLI (for 127.0.0.1 and
// localhost); a wrong key path stops start-up.
//
// pusher-js's Node transport (faye-websocket) takes no CA option, so this file, and only
// this file (each test file runs in its own process), trusts any certificate through
// NODE_TLS_REJECT_UNAUTHORIZED. The SDK and the /ready probes still verify the certificate
// against the generated one, with their own https agents.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import {
  failedStart,
  freePort,
  httpRequest,
  parseData,
  scratch,
  subscribe,
  uniqueChannel,
  useServer,
  waitFor,
} from './harness.mjs';

process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

/** Generates a self-signed certificate for 127.0.0.1 and localhost; returns the paths and the PEM. */
function selfSignedCertificate() {
  const dir = scratch();
  const cert = path.join(dir, 'tls-cert.pem');
  const key = path.join(dir, 'tls-key.pem');
  try {
    execFileSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2',
        '-keyout', key, '-out', cert,
        '-subj', '/CN=127.0.0.1',
        '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
        '-addext', 'basicConstraints=critical,CA:TRUE',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 },
    );
  } catch (err) {
    throw new Error(`could not generate a certificate with the openssl CLI (is it installed?): ${err.stderr ?? err.message}`);
  }
  return { cert, key, ca: readFileSync(cert, 'utf8') };
}

const certificate = selfSignedCertificate();

describe('TLS with a self-signed certificate', () => {
  const scope = useServer(
    { SOKETI_SSL_CERT: certificate.cert, SOKETI_SSL_KEY: certificate.key },
    { tls: { ca: certificate.ca } },
  );

  it('answers /ready over https with a certificate for 127.0.0.1', async () => {
    const res = await httpRequest(`https://127.0.0.1:${scope.server.port}/ready`, { ca: certificate.ca });
    assert.equal(res.status, 200, res.text);
  });

  it('serves the certificate for localhost too', async () => {
    // Connect to 127.0.0.1 (the server binds only that), and check the name localhost.
    const res = await httpRequest(`https://127.0.0.1:${scope.server.port}/ready`, { ca: certificate.ca, servername: 'localhost' });
    assert.equal(res.status, 200, res.text);
  });

  it('delivers an event published by the SDK over https to pusher-js over wss', async () => {
    const name = uniqueChannel('private-');
    const client = await scope.connectedPusher({ forceTLS: true, wssPort: scope.server.port });
    const { channel } = await subscribe(client, name);
    const received = waitFor(channel, 'secure');
    const res = await scope.sdk().trigger(name, 'secure', { tls: true });
    assert.equal(res.status, 200);
    assert.deepEqual(await received, { tls: true });
  });

  it('serves raw wss:// clients', async () => {
    assert.match(scope.server.wsUrl(), /^wss:/);
    const name = uniqueChannel();
    const client = await scope.rawSubscribed(name);
    assert.equal((await scope.sdk().trigger(name, 'raw-secure', { n: 1 })).status, 200);
    assert.deepEqual(parseData(await client.next('raw-secure')), { n: 1 });
  });

  it('does not answer plain http on the TLS port', async () => {
    const outcome = await httpRequest(`http://127.0.0.1:${scope.server.port}/ready`, { timeout: 2_000 }).then(
      (res) => res.status,
      (err) => err.code ?? err.message,
    );
    assert.notEqual(outcome, 200, 'plain http must not reach the API on the TLS port');
  });
});

describe('TLS misconfiguration', () => {
  it('a missing key file stops start-up with a line naming SOKETI_SSL_KEY or the path', async () => {
    const missing = path.join(scratch(), 'no-such-key.pem');
    const env = {
      SOKETI_HOST: '127.0.0.1',
      SOKETI_PORT: String(await freePort()),
      SOKETI_METRICS_HOST: '127.0.0.1',
      SOKETI_METRICS_SERVER_PORT: String(await freePort()),
      SOKETI_SSL_CERT: certificate.cert,
      SOKETI_SSL_KEY: missing,
    };
    const { run, lines } = await failedStart(['start'], env);
    assert.ok(
      lines.some((line) => line.includes('SOKETI_SSL_KEY') || line.includes(missing)),
      `expected a stderr line naming SOKETI_SSL_KEY or ${missing}; stderr:\n${run.stderr}`,
    );
  });
});
