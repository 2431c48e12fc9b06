/*
 * crypto.js: SHA-256, HMAC-SHA256 and MD5 in plain JavaScript, for the soketi-rs debug console
 * (served at /console/crypto.js).
 *
 * The console signs Pusher HTTP API requests in the browser. WebCrypto is missing in insecure
 * contexts (plain http on a private address) and has no MD5 anyway, so the digests are written
 * out here. Classic script, no modules, no dependencies; it defines
 *
 *   globalThis.ConsoleCrypto = { sha256Hex(text), hmacSha256Hex(key, text), md5Hex(text) }
 *
 * Every argument is a JavaScript string, hashed as its UTF-8 bytes (a lone surrogate becomes
 * U+FFFD, as TextEncoder and Node's Buffer do). Results are lowercase hex.
 */
(function () {
  'use strict';

  // The UTF-8 bytes of a string.
  function utf8(text) {
    const str = String(text);
    const out = new Uint8Array(str.length * 3); // a UTF-16 unit never takes more than 3 bytes
    let n = 0;
    for (let i = 0; i < str.length; i++) {
      let c = str.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdfff) {
        const next = str.charCodeAt(i + 1); // NaN past the end
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
          i++;
        } else {
          c = 0xfffd;
        }
      }
      if (c < 0x80) {
        out[n++] = c;
      } else if (c < 0x800) {
        out[n++] = 0xc0 | (c >> 6);
        out[n++] = 0x80 | (c & 0x3f);
      } else if (c < 0x10000) {
        out[n++] = 0xe0 | (c >> 12);
        out[n++] = 0x80 | ((c >> 6) & 0x3f);
        out[n++] = 0x80 | (c & 0x3f);
      } else {
        out[n++] = 0xf0 | (c >> 18);
        out[n++] = 0x80 | ((c >> 12) & 0x3f);
        out[n++] = 0x80 | ((c >> 6) & 0x3f);
        out[n++] = 0x80 | (c & 0x3f);
      }
    }
    return out.subarray(0, n);
  }

  // The Merkle-Damgard padding shared by MD5 and SHA-256: the message, a 0x80 byte, zeros, and
  // the message length in bits as 64 bits (big-endian for SHA-256, little-endian for MD5), in a
  // whole number of 64-byte blocks.
  function pad(bytes, bigEndian) {
    const len = bytes.length;
    const total = Math.ceil((len + 9) / 64) * 64;
    const out = new Uint8Array(total);
    out.set(bytes);
    out[len] = 0x80;
    const bitsLow = (len * 8) >>> 0; // exact: len * 8 stays far below 2^53
    const bitsHigh = Math.floor(len / 0x20000000);
    for (let i = 0; i < 4; i++) {
      const low = (bitsLow >>> (8 * i)) & 0xff;
      const high = (bitsHigh >>> (8 * i)) & 0xff;
      if (bigEndian) {
        out[total - 1 - i] = low;
        out[total - 5 - i] = high;
      } else {
        out[total - 8 + i] = low;
        out[total - 4 + i] = high;
      }
    }
    return out;
  }

  // 32-bit words to bytes.
  function wordsToBytes(words, bigEndian) {
    const out = new Uint8Array(words.length * 4);
    words.forEach((word, i) => {
      for (let j = 0; j < 4; j++) {
        out[4 * i + j] = (word >>> (bigEndian ? 24 - 8 * j : 8 * j)) & 0xff;
      }
    });
    return out;
  }

  function hex(bytes) {
    let s = '';
    for (let i = 0; i < bytes.length; i++) s += (bytes[i] < 16 ? '0' : '') + bytes[i].toString(16);
    return s;
  }

  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  const rotl = (x, n) => (x << n) | (x >>> (32 - n));

  // ---- SHA-256 (FIPS 180-4) ----

  // The first 32 bits of the fractional parts of the cube roots of the first 64 primes.
  const K256 = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ];

  function sha256(bytes) {
    const m = pad(bytes, true);
    const h = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    const w = new Int32Array(64);
    for (let block = 0; block < m.length; block += 64) {
      for (let t = 0; t < 16; t++) {
        const j = block + 4 * t;
        w[t] = (m[j] << 24) | (m[j + 1] << 16) | (m[j + 2] << 8) | m[j + 3];
      }
      for (let t = 16; t < 64; t++) {
        const x = w[t - 15];
        const y = w[t - 2];
        const s0 = rotr(x, 7) ^ rotr(x, 18) ^ (x >>> 3);
        const s1 = rotr(y, 17) ^ rotr(y, 19) ^ (y >>> 10);
        w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
      }
      let [a, b, c, d, e, f, g, hh] = h;
      for (let t = 0; t < 64; t++) {
        const s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
        const ch = (e & f) ^ (~e & g);
        const t1 = (hh + s1 + ch + K256[t] + w[t]) | 0;
        const s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
        const maj = (a & b) ^ (a & c) ^ (b & c);
        const t2 = (s0 + maj) | 0;
        hh = g;
        g = f;
        f = e;
        e = (d + t1) | 0;
        d = c;
        c = b;
        b = a;
        a = (t1 + t2) | 0;
      }
      [a, b, c, d, e, f, g, hh].forEach((v, i) => {
        h[i] = (h[i] + v) | 0;
      });
    }
    return wordsToBytes(h, true);
  }

  // ---- HMAC-SHA256 (RFC 2104) ----

  function hmacSha256(key, message) {
    const k = key.length > 64 ? sha256(key) : key;
    const inner = new Uint8Array(64 + message.length);
    const outer = new Uint8Array(64 + 32);
    for (let i = 0; i < 64; i++) {
      const byte = i < k.length ? k[i] : 0;
      inner[i] = byte ^ 0x36;
      outer[i] = byte ^ 0x5c;
    }
    inner.set(message, 64);
    outer.set(sha256(inner), 64);
    return sha256(outer);
  }

  // ---- MD5 (RFC 1321) ----

  // floor(abs(sin(i + 1)) * 2^32), written out so that no Math.sin rounding can change them.
  const K5 = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
  ];
  // The left rotations, four per round.
  const SHIFTS = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];

  function md5(bytes) {
    const m = pad(bytes, false);
    const h = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];
    const x = new Int32Array(16);
    for (let block = 0; block < m.length; block += 64) {
      for (let t = 0; t < 16; t++) {
        const j = block + 4 * t;
        x[t] = m[j] | (m[j + 1] << 8) | (m[j + 2] << 16) | (m[j + 3] << 24);
      }
      let [a, b, c, d] = h;
      for (let i = 0; i < 64; i++) {
        let f;
        let g;
        if (i < 16) {
          f = (b & c) | (~b & d);
          g = i;
        } else if (i < 32) {
          f = (d & b) | (~d & c);
          g = (5 * i + 1) & 15;
        } else if (i < 48) {
          f = b ^ c ^ d;
          g = (3 * i + 5) & 15;
        } else {
          f = c ^ (b | ~d);
          g = (7 * i) & 15;
        }
        const sum = (a + f + K5[i] + x[g]) | 0;
        a = d;
        d = c;
        c = b;
        b = (b + rotl(sum, SHIFTS[(i >> 4) * 4 + (i & 3)])) | 0;
      }
      [a, b, c, d].forEach((v, i) => {
        h[i] = (h[i] + v) | 0;
      });
    }
    return wordsToBytes(h, false);
  }

  globalThis.ConsoleCrypto = Object.freeze({
    sha256Hex: (text) => hex(sha256(utf8(text))),
    hmacSha256Hex: (key, text) => hex(hmacSha256(utf8(key), utf8(text))),
    md5Hex: (text) => hex(md5(utf8(text))),
  });
})();
