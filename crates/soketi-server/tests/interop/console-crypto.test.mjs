// The debug console's hand-written digests (src/console/crypto.js), checked against node:crypto.
//
// The console signs HTTP API requests in the browser with SHA-256/HMAC-SHA256 and MD5 written in
// plain JavaScript. This loads crypto.js the way a page does, as a classic script, but into a
// fresh `node:vm` context (no TextEncoder, no Buffer, no WebCrypto), and compares every result
// with node:crypto: published vectors, block-boundary lengths, non-ASCII UTF-8, a 1 MB input, and
// random strings and keys from a seeded generator. Needs no server and no npm packages.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import vm from 'node:vm';

const SOURCE_URL = new URL('../../src/console/crypto.js', import.meta.url);

function loadConsoleCrypto() {
  const context = vm.createContext({});
  vm.runInContext(readFileSync(SOURCE_URL, 'utf8'), context, { filename: SOURCE_URL.pathname });
  return context.ConsoleCrypto;
}

const C = loadConsoleCrypto();

const nodeSha256 = (s) => crypto.createHash('sha256').update(s, 'utf8').digest('hex');
const nodeMd5 = (s) => crypto.createHash('md5').update(s, 'utf8').digest('hex');
const nodeHmac = (key, s) => crypto.createHmac('sha256', Buffer.from(key, 'utf8')).update(s, 'utf8').digest('hex');

/** Compares all three digests of `text` (HMAC under `key`) with node:crypto. */
function checkAll(text, key = 'secret', label = JSON.stringify(text.slice(0, 40))) {
  assert.equal(C.sha256Hex(text), nodeSha256(text), `sha256 of ${label} (length ${text.length})`);
  assert.equal(C.md5Hex(text), nodeMd5(text), `md5 of ${label} (length ${text.length})`);
  assert.equal(
    C.hmacSha256Hex(key, text),
    nodeHmac(key, text),
    `hmac of ${label} (length ${text.length}) under a key of length ${key.length}`,
  );
}

// mulberry32: a small seeded generator, so that a failure can be replayed.
function generator(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Characters of every UTF-8 width, plus lone surrogates (encoded as U+FFFD by both sides).
const ALPHABETS = [
  'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \n\t{}":,.-_/+=&?#%\\',
  'éèêàçñöüßøÅ©±µ¿',
  'Ωжשع中文日本語한국어€…–—“”',
  ['😀', '🎉', '🚀', '𝄞', '👩‍💻', '🇫🇷'].join(''),
];

function randomText(rand, length, { asciiOnly = false } = {}) {
  let s = '';
  while (s.length < length) {
    const roll = rand();
    if (!asciiOnly && roll < 0.01) {
      s += String.fromCharCode(0xd800 + Math.floor(rand() * 0x800)); // lone surrogate
      continue;
    }
    const alphabet = asciiOnly ? ALPHABETS[0] : ALPHABETS[roll < 0.7 ? 0 : roll < 0.8 ? 1 : roll < 0.9 ? 2 : 3];
    const chars = Array.from(alphabet);
    s += chars[Math.floor(rand() * chars.length)];
  }
  return s;
}

describe('console crypto.js', () => {
  it('defines ConsoleCrypto in a bare context, with nothing else', () => {
    assert.equal(typeof C, 'object');
    assert.deepEqual(Object.keys(C).sort(), ['hmacSha256Hex', 'md5Hex', 'sha256Hex']);
    const context = vm.createContext({});
    vm.runInContext(readFileSync(SOURCE_URL, 'utf8'), context);
    assert.deepEqual(Object.keys(context), ['ConsoleCrypto']);
  });

  it('hashes the empty string', () => {
    assert.equal(C.sha256Hex(''), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(C.md5Hex(''), 'd41d8cd98f00b204e9800998ecf8427e');
    assert.equal(C.hmacSha256Hex('', ''), 'b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad');
    checkAll('', '');
    checkAll('', 'key');
  });

  it('matches the published vectors', () => {
    // FIPS 180-2 examples, including the 56-byte and 112-byte messages.
    assert.equal(C.sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    const nist56 = 'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq';
    assert.equal(nist56.length, 56);
    assert.equal(C.sha256Hex(nist56), '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1');
    const nist112 =
      'abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu';
    assert.equal(nist112.length, 112);
    assert.equal(C.sha256Hex(nist112), 'cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1');
    // RFC 1321.
    assert.equal(C.md5Hex('abc'), '900150983cd24fb0d6963f7d28e17f72');
    assert.equal(C.md5Hex('message digest'), 'f96b697d7cb7938d525a2f31aaf161d0');
    assert.equal(
      C.md5Hex('12345678901234567890123456789012345678901234567890123456789012345678901234567890'),
      '57edf4a22be3c955ac49da2e2107b67a',
    );
    // RFC 4231 test case 2.
    assert.equal(
      C.hmacSha256Hex('Jefe', 'what do ya want for nothing?'),
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    );
    for (const text of ['abc', nist56, nist112, 'The quick brown fox jumps over the lazy dog']) {
      checkAll(text, 'key');
    }
  });

  it('hashes a 1 MB string', () => {
    const million = 'a'.repeat(1_000_000);
    assert.equal(C.sha256Hex(million), 'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0');
    assert.equal(C.md5Hex(million), '7707d6ae4e027c70eea2a935c2296f21');
    checkAll(million, 'a key that is longer than the sixty-four bytes of a SHA-256 block, so it is hashed first');
    const mixed = randomText(generator(7), 1 << 20);
    checkAll(mixed, 'k', 'a random 1 MB string');
  });

  it('encodes non-ASCII text as UTF-8', () => {
    const samples = [
      'é',
      'crème brûlée à la française',
      'Größe',
      'ñandú',
      '😀',
      'party 🎉🎉 time 🚀',
      '👩‍💻 family 👨‍👩‍👧‍👦 flag 🇯🇵',
      '𝄞 music',
      '中文字符 日本語 한국어',
      'Ωмега שלום مرحبا',
      '\u0000nul\u007f del \u0080\u07ff\u0800\uffff',
      '\u{10ffff}',
      'lone high \ud800 surrogate',
      'lone low \udc00 surrogate',
      'ends with a high surrogate \ud83d',
      '\udc00\ud800 reversed pair',
    ];
    for (const text of samples) {
      checkAll(text, 'clé secrète 🔑');
      checkAll(text, text);
    }
  });

  it('matches node:crypto at every ASCII length 0 to 300 (all block boundaries)', () => {
    const rand = generator(1);
    for (let length = 0; length <= 300; length++) {
      const key = randomText(rand, Math.floor(rand() * 130), { asciiOnly: true });
      checkAll(randomText(rand, length, { asciiOnly: true }), key);
    }
  });

  it('matches node:crypto on 500 random strings and keys', () => {
    const seed = 20240613;
    const rand = generator(seed);
    // Lengths around the 55/56/64-byte block boundaries (in UTF-16 units; non-ASCII characters
    // move the byte length around them too), then random lengths.
    const boundaries = [0, 1, 54, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 183, 184, 191, 192];
    // Key lengths on both sides of the 64-byte HMAC block, then random ones up to 200.
    const keyBoundaries = [0, 1, 63, 64, 65, 100, 128, 200];
    for (let i = 0; i < 500; i++) {
      const length = i < boundaries.length * 2 ? boundaries[i % boundaries.length] : Math.floor(rand() * 301);
      const asciiOnly = i < boundaries.length || rand() < 0.3;
      const keyLength = i < keyBoundaries.length * 4 ? keyBoundaries[i % keyBoundaries.length] : Math.floor(rand() * 201);
      const text = randomText(rand, length, { asciiOnly });
      const key = randomText(rand, keyLength, { asciiOnly: rand() < 0.5 });
      checkAll(text, key, `random string #${i} (seed ${seed})`);
    }
  });

  it('hashes the strings the console signs', () => {
    const body = JSON.stringify({ name: 'my-event', channels: ['my-channel'], data: '{"message":"héllo 👋"}' });
    checkAll(body, 'app-secret');
    const toSign = 'GET\n/apps/app-id/console\nauth_key=app-key&auth_timestamp=1700000000&auth_version=1.0';
    checkAll(toSign, 'app-secret');
  });
});
