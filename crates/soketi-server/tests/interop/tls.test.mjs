// TLS: with SOKETI_SSL_CERT and SOKETI_SSL_KEY the server serves wss:// and https:// with a
// self-signed certificate that the test generates with the openssl CLI (for 127.0.0.1 and
// localhost); keys in PKCS#1 and SEC1 form work as PKCS#8 does, and so does a PKCS#8 key
// encrypted with the passphrase of SOKETI_SSL_PASS (a wrong or missing one stops start-up,
// naming SOKETI_SSL_PASS); the certificate file may hold the chain, or SOKETI_SSL_CHAIN sends an
// intermediate CA with it; SOKETI_SSL_CA is, as in soketi (uSockets: SSL_VERIFY_PEER without
// FAIL_IF_NO_PEER_CERT), the CA that client certificates are verified against: a client with
// none is served, one with a certificate of that CA is served, one with a certificate of another
// CA is refused in the handshake; a wrong key path stops start-up.
//
// pusher-js's Node transport (faye-websocket) takes no CA option, so this file, and only
// this file (each test file runs in its own process), trusts any certificate through
// NODE_TLS_REJECT_UNAUTHORIZED. The SDK and the /ready probes still verify the certificate
// against the generated one, with their own https agents.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
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
import WebSocket from 'ws';

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

/** Runs the openssl CLI in the scratch directory; returns the path of `out` there. */
function openssl(args, out) {
  try {
    execFileSync('openssl', args, { cwd: scratch(), stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 });
  } catch (err) {
    throw new Error(`openssl ${args.join(' ')} failed: ${err.stderr ?? err.message}`);
  }
  return path.join(scratch(), out);
}

/**
 * A root CA, an intermediate CA signed by it, and a leaf for 127.0.0.1 signed by the
 * intermediate, with an EC key in SEC1 form (`BEGIN EC PRIVATE KEY`), and the leaf's RSA twin
 * with a PKCS#1 key (`BEGIN RSA PRIVATE KEY`). A client that trusts only the root accepts the
 * leaf only when the server sends the intermediate along.
 */
function certificateChain() {
  const tag = `chain-${process.pid}`;
  const ext = (name, text) => {
    writeFileSync(path.join(scratch(), name), text);
    return name;
  };
  const caExt = ext(`${tag}-ca.ext`, 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n');
  const leafExt = ext(`${tag}-leaf.ext`, 'basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2', '-subj', '/CN=test root', '-keyout', `${tag}-root.key`, '-out', `${tag}-root.pem`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], `${tag}-root.pem`);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=test intermediate', '-keyout', `${tag}-inter.key`, '-out', `${tag}-inter.csr`], `${tag}-inter.csr`);
  openssl(['x509', '-req', '-in', `${tag}-inter.csr`, '-CA', `${tag}-root.pem`, '-CAkey', `${tag}-root.key`, '-CAcreateserial', '-days', '2', '-sha256', '-extfile', caExt, '-out', `${tag}-inter.pem`], `${tag}-inter.pem`);
  const leaf = (kind, keyArgs) => {
    openssl(keyArgs(`${tag}-${kind}.key`), `${tag}-${kind}.key`);
    openssl(['req', '-new', '-key', `${tag}-${kind}.key`, '-subj', '/CN=127.0.0.1', '-out', `${tag}-${kind}.csr`], `${tag}-${kind}.csr`);
    openssl(['x509', '-req', '-in', `${tag}-${kind}.csr`, '-CA', `${tag}-inter.pem`, '-CAkey', `${tag}-inter.key`, '-CAcreateserial', '-days', '2', '-sha256', '-extfile', leafExt, '-out', `${tag}-${kind}.pem`], `${tag}-${kind}.pem`);
    return { cert: path.join(scratch(), `${tag}-${kind}.pem`), key: path.join(scratch(), `${tag}-${kind}.key`) };
  };
  const ec = leaf('ec', (out) => ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', out]);
  const rsa = leaf('rsa', (out) => ['genrsa', '-traditional', '-out', out, '2048']);
  return { root: readFileSync(path.join(scratch(), `${tag}-root.pem`), 'utf8'), intermediate: path.join(scratch(), `${tag}-inter.pem`), ec, rsa };
}

const chain = certificateChain();

for (const [form, keyOf, header] of [
  ['SEC1 (EC)', () => chain.ec, 'BEGIN EC PRIVATE KEY'],
  ['PKCS#1 (RSA)', () => chain.rsa, 'BEGIN RSA PRIVATE KEY'],
]) {
  describe(`TLS with a ${form} key and SOKETI_SSL_CHAIN holding the intermediate CA`, () => {
    const { cert, key } = keyOf();
    const scope = useServer({ SOKETI_SSL_CERT: cert, SOKETI_SSL_KEY: key, SOKETI_SSL_CHAIN: chain.intermediate }, { tls: { ca: chain.root } });

    it(`serves https with the key as written (${header}) and sends the intermediate, so a client trusting only the root accepts it`, async () => {
      assert.ok(readFileSync(key, 'utf8').includes(header), `the key file is in ${form} form`);
      const res = await httpRequest(`https://127.0.0.1:${scope.server.port}/ready`, { ca: chain.root });
      assert.equal(res.status, 200, res.text);
    });

    it('delivers an event published over https to a wss:// client', async () => {
      const name = uniqueChannel();
      const client = await scope.rawSubscribed(name);
      assert.equal((await scope.sdk().trigger(name, 'chained', { n: 1 })).status, 200);
      assert.deepEqual(parseData(await client.next('chained')), { n: 1 });
    });
  });
}

describe('TLS with the intermediate CA in the certificate file (a full chain, as soketi takes it)', () => {
  const fullChain = path.join(scratch(), `fullchain-${process.pid}.pem`);
  writeFileSync(fullChain, `${readFileSync(chain.ec.cert, 'utf8')}${readFileSync(chain.intermediate, 'utf8')}`);
  const scope = useServer({ SOKETI_SSL_CERT: fullChain, SOKETI_SSL_KEY: chain.ec.key }, { tls: { ca: chain.root } });

  it('sends every certificate of the file: a client that trusts only the root accepts the leaf', async () => {
    const res = await httpRequest(`https://127.0.0.1:${scope.server.port}/ready`, { ca: chain.root });
    assert.equal(res.status, 200, res.text);
  });
});

describe('TLS without SOKETI_SSL_CHAIN for a leaf of an intermediate CA', () => {
  const scope = useServer({ SOKETI_SSL_CERT: chain.ec.cert, SOKETI_SSL_KEY: chain.ec.key }, { tls: { ca: `${chain.root}${readFileSync(chain.intermediate, 'utf8')}` } });

  it('sends the leaf alone: a client that trusts only the root refuses it (the control of SOKETI_SSL_CHAIN)', async () => {
    const outcome = await httpRequest(`https://127.0.0.1:${scope.server.port}/ready`, { ca: chain.root, timeout: 2_000 }).then(
      (res) => `status ${res.status}`,
      (err) => err.code ?? err.message,
    );
    assert.equal(outcome, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'without the intermediate the chain cannot be built');
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

/** The key of the self-signed certificate, encrypted as PKCS#8 (PBES2) with `passphrase`. */
function encryptedKey(passphrase, extra = []) {
  const out = `encrypted-${process.pid}-${crypto.randomUUID()}.key`;
  return openssl(['pkcs8', '-topk8', '-in', certificate.key, '-out', out, '-passout', `pass:${passphrase}`, ...extra], out);
}

const PASSPHRASE = 'correct horse battery staple';
const encrypted = encryptedKey(PASSPHRASE);

describe('TLS with a key encrypted with the passphrase of SOKETI_SSL_PASS', () => {
  const scope = useServer({ SOKETI_SSL_CERT: certificate.cert, SOKETI_SSL_KEY: encrypted, SOKETI_SSL_PASS: PASSPHRASE }, { tls: { ca: certificate.ca } });

  it('decrypts the key (BEGIN ENCRYPTED PRIVATE KEY, PBKDF2 and AES-256-CBC) and serves https and wss', async () => {
    assert.ok(readFileSync(encrypted, 'utf8').includes('BEGIN ENCRYPTED PRIVATE KEY'), 'the key file is encrypted PKCS#8');
    const res = await httpRequest(`https://127.0.0.1:${scope.server.port}/ready`, { ca: certificate.ca });
    assert.equal(res.status, 200, res.text);
    const name = uniqueChannel();
    const client = await scope.rawSubscribed(name);
    assert.equal((await scope.sdk().trigger(name, 'decrypted', { n: 1 })).status, 200);
    assert.deepEqual(parseData(await client.next('decrypted')), { n: 1 });
  });
});

describe('TLS with an encrypted key and a wrong or missing SOKETI_SSL_PASS', () => {
  const env = async (pass) => ({
    SOKETI_HOST: '127.0.0.1',
    SOKETI_PORT: String(await freePort()),
    SOKETI_METRICS_HOST: '127.0.0.1',
    SOKETI_METRICS_SERVER_PORT: String(await freePort()),
    SOKETI_SSL_CERT: certificate.cert,
    SOKETI_SSL_KEY: encrypted,
    ...(pass === undefined ? {} : { SOKETI_SSL_PASS: pass }),
  });

  it('a wrong passphrase stops start-up with a line naming SOKETI_SSL_PASS', async () => {
    const { run, lines } = await failedStart(['start'], await env('wrong horse'));
    assert.ok(lines.some((l) => l.includes('SOKETI_SSL_PASS') && l.includes('does not decrypt')), `stderr:\n${run.stderr}`);
  });

  it('no passphrase stops start-up with a line saying the key is encrypted and naming SOKETI_SSL_PASS', async () => {
    const { run, lines } = await failedStart(['start'], await env(undefined));
    assert.ok(lines.some((l) => l.includes('SOKETI_SSL_PASS') && l.includes('encrypted')), `stderr:\n${run.stderr}`);
  });
});

/** A CA and a client certificate it signed (extendedKeyUsage clientAuth); `name` tags the files. */
function clientCa(name) {
  const tag = `${name}-${process.pid}`;
  const extFile = `${tag}-client.ext`;
  writeFileSync(path.join(scratch(), extFile), 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n');
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2', '-subj', `/CN=${name} client CA`, '-keyout', `${tag}-ca.key`, '-out', `${tag}-ca.pem`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], `${tag}-ca.pem`);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name} client`, '-keyout', `${tag}-client.key`, '-out', `${tag}-client.csr`], `${tag}-client.csr`);
  openssl(['x509', '-req', '-in', `${tag}-client.csr`, '-CA', `${tag}-ca.pem`, '-CAkey', `${tag}-ca.key`, '-CAcreateserial', '-days', '2', '-sha256', '-extfile', extFile, '-out', `${tag}-client.pem`], `${tag}-client.pem`);
  const read = (file) => readFileSync(path.join(scratch(), file), 'utf8');
  return { caPath: path.join(scratch(), `${tag}-ca.pem`), cert: read(`${tag}-client.pem`), key: read(`${tag}-client.key`) };
}

/**
 * A TLS handshake to `port` with node's tls module, presenting `client` ({ cert, key }) or no
 * certificate, then one HTTP request for /ready over it. Resolves with the status line, or with
 * `refused: <error code>` when the server ends the connection instead (with TLS 1.3 the
 * server's verdict on a client certificate comes after the client's side of the handshake, as
 * an alert on the first read).
 */
function mutualTls(port, client) {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: certificate.ca, servername: 'localhost', ...(client ?? {}) });
    let answer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('no answer within 5 s');
    }, 5_000);
    socket.on('secureConnect', () => socket.write('GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'));
    socket.on('data', (chunk) => {
      answer += chunk;
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      resolve(`refused: ${err.code ?? err.message}`);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(answer.split('\r\n')[0] || 'closed without an answer');
    });
  });
}

/** A `ws` client over wss:// presenting `client` ({ cert, key }) or nothing; resolves with its first frame's event or the error. */
function wssFirstEvent(scope, client) {
  return new Promise((resolve) => {
    const ws = new WebSocket(scope.server.wsUrl(), { ca: certificate.ca, servername: 'localhost', ...(client ?? {}) });
    const done = (value) => {
      ws.terminate();
      resolve(value);
    };
    ws.on('message', (raw) => done(JSON.parse(raw.toString()).event));
    ws.on('error', (err) => done(`refused: ${err.code ?? err.message}`));
    ws.on('close', (code) => done(`closed with ${code}`));
  });
}

const trusted = clientCa('trusted');
const stranger = clientCa('stranger');

describe("TLS with SOKETI_SSL_CA: the CA that client certificates are verified against (soketi's meaning)", () => {
  const scope = useServer({ SOKETI_SSL_CERT: certificate.cert, SOKETI_SSL_KEY: certificate.key, SOKETI_SSL_CA: trusted.caPath }, { tls: { ca: certificate.ca } });

  it('serves a client that presents no certificate, over https and wss', async () => {
    assert.equal(await mutualTls(scope.server.port), 'HTTP/1.1 200 OK');
    assert.equal(await wssFirstEvent(scope), 'pusher:connection_established');
    const res = await httpRequest(`https://127.0.0.1:${scope.server.port}/ready`, { ca: certificate.ca });
    assert.equal(res.status, 200, 'node:https without a certificate');
  });

  it('serves a client whose certificate the CA signed', async () => {
    assert.equal(await mutualTls(scope.server.port, trusted), 'HTTP/1.1 200 OK');
    assert.equal(await wssFirstEvent(scope, trusted), 'pusher:connection_established');
  });

  it('refuses, in the handshake, a client whose certificate another CA signed', async (t) => {
    const outcome = await mutualTls(scope.server.port, stranger);
    assert.match(outcome, /^refused: ERR_SSL_.*ALERT/, `a certificate of another CA: ${outcome}`);
    const ws = await wssFirstEvent(scope, stranger);
    assert.match(ws, /^refused: ERR_SSL_.*ALERT/, `a certificate of another CA over wss: ${ws}`);
    t.diagnostic(`a certificate of another CA: tls ${outcome}, ws ${ws}`);
    // The refusal is the certificate's: the same client without it is served.
    assert.equal(await mutualTls(scope.server.port), 'HTTP/1.1 200 OK');
  });
});
