// A stand-in for AWS Lambda's Invoke API, for the tests of Lambda webhooks (aws-lambda.test.mjs).
// moto's Lambda runs functions in Docker, which the test machines do not have, so the tests
// point the server's Lambda client here instead (a webhook's `lambda.client_options.endpoint`,
// or AWS_ENDPOINT_URL_LAMBDA).
//
// It speaks the part of the API that an Invoke uses, as AWS answers it:
// `POST /2015-03-31/functions/{FunctionName}/invocations` with `X-Amz-Invocation-Type`
// `RequestResponse` (the default: 200 and the function's result, or 200 with
// `X-Amz-Function-Error: Unhandled` and the error as the result when the function threw),
// `Event` (202, nothing returned) or `DryRun` (204). Every request must be signed with SigV4 for
// the secret key `test`: the signature is computed again here, and a request without a valid one
// is refused with 403, as AWS does. Every function name exists.
//
// Each request is recorded, valid or not, as `{ seq, functionName, qualifier, invocationType,
// credential, signedHeaders, signatureValid, signatureProblem, rawBody, json, status,
// functionError, headers, at }`, `credential` being the Authorization header's credential scope
// `{ accessKeyId, date, region, service, terminal }`. It reads requests and waits for them as
// webhook-receiver.mjs does (its `readBody` and `recordWaits`).

import crypto from 'node:crypto';
import http from 'node:http';

import { freePort } from './harness.mjs';
import { parseJson, readBody, recordWaits, truncate } from './webhook-receiver.mjs';

const DEFAULT_WAIT_MS = 5_000;
/** How far X-Amz-Date may be from this machine's clock: AWS allows 5 minutes. */
const MAX_SKEW_MS = 5 * 60 * 1000;
const INVOKE_PATH = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/;

/**
 * Starts the endpoint on a free port (or `port`) of `host`. Resolves once it listens with:
 * - `port`, `endpoint` (`http://host:port`, the Lambda client's endpoint);
 * - `invocations`: every request, in order of arrival (see the file's comment);
 * - `fail(functionName, count, kind)`: the next `count` invocations of that function fail:
 *   `kind` `'service'` answers 500 (`ServiceException`, a failure of Lambda itself), and
 *   `'function'` answers 200 with `X-Amz-Function-Error: Unhandled` (the function threw; an
 *   `Event` invocation is still accepted with 202, as AWS does, since it runs later);
 * - `result`: what a RequestResponse invocation returns (JSON);
 * - `of(functionName, since)`: the invocations of that function;
 * - `waitFor(match, n, { timeout, since, what })`: resolves with the first n invocations for
 *   which `match(invocation)` holds, once there are n;
 * - `mark()`: the number of invocations so far, for `since`;
 * - `describe(since)`: the invocations as text, for assertion messages;
 * - `close()`.
 */
export async function startLambdaEndpoint({ port: wantedPort, host = '127.0.0.1', secretAccessKey = 'test' } = {}) {
  const port = wantedPort ?? (await freePort());
  const invocations = [];
  const failures = new Map();
  const waits = recordWaits('the Lambda endpoint', invocations, (since) => endpoint.describe(since));

  const endpoint = {
    port,
    endpoint: `http://${host}:${port}`,
    invocations,
    result: { statusCode: 200, body: 'ok' },
    fail(functionName, count, kind = 'service') {
      if (kind !== 'service' && kind !== 'function') throw new Error(`unknown failure kind ${kind}`);
      failures.set(functionName, { count, kind });
    },
    mark: () => invocations.length,
    of: (functionName, since = 0) => invocations.slice(since).filter((i) => i.functionName === functionName),
    waitFor(match, n = 1, { timeout = DEFAULT_WAIT_MS, since = 0, what = `${n} matching invocation(s)` } = {}) {
      return waits.matching(match, n, { timeout, since, what });
    },
    describe(since = 0) {
      const list = invocations.slice(since);
      if (list.length === 0) return '(no invocations)';
      return list
        .map((i) => {
          const signed = i.signatureValid ? 'signed' : `NOT signed (${i.signatureProblem})`;
          const error = i.functionError ? ` ${i.functionError}` : '';
          return `#${i.seq} ${i.functionName ?? i.path} ${i.invocationType} -> ${i.status}${error}, ${signed} ${truncate(i.rawBody)}`;
        })
        .join('\n  ');
    },
    close() {
      waits.cancel();
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };

  const server = http.createServer((req, res) => {
    readBody(req, (body) => {
      const record = answer(req, body);
      record.seq = invocations.length;
      invocations.push(record);
      res.writeHead(record.status, record.responseHeaders);
      res.end(record.responseBody);
      waits.poke();
    });
  });

  /** Decides the answer to one request and returns its record. */
  function answer(req, body) {
    const url = new URL(req.url, endpoint.endpoint);
    const rawBody = body.toString('utf8');
    const json = parseJson(rawBody);
    const record = {
      path: url.pathname,
      method: req.method,
      headers: req.headers,
      rawBody,
      json,
      at: Date.now(),
      functionName: null,
      qualifier: url.searchParams.get('Qualifier'),
      invocationType: req.headers['x-amz-invocation-type'] ?? 'RequestResponse',
      ...verifySignature(req, url, body, secretAccessKey),
      functionError: null,
    };
    const reply = (status, type, message, extraHeaders = {}) => {
      record.status = status;
      record.responseHeaders = {
        'content-type': 'application/json',
        'x-amzn-requestid': crypto.randomUUID(),
        ...(type ? { 'x-amzn-errortype': type } : {}),
        ...extraHeaders,
      };
      record.responseBody = type ? JSON.stringify({ Type: status < 500 ? 'User' : 'Service', message }) : message;
      return record;
    };

    const match = INVOKE_PATH.exec(url.pathname);
    if (req.method !== 'POST' || !match) {
      return reply(404, 'UnknownOperationException', `no operation ${req.method} ${url.pathname}`);
    }
    record.functionName = decodeURIComponent(match[1]);
    if (!req.headers.authorization) return reply(403, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
    if (!record.signatureValid) return reply(403, 'InvalidSignatureException', record.signatureProblem);
    if (json === undefined) return reply(400, 'InvalidRequestContentException', 'Could not parse request body into json');
    if (!['RequestResponse', 'Event', 'DryRun'].includes(record.invocationType)) {
      return reply(400, 'InvalidParameterValueException', `invalid invocation type ${record.invocationType}`);
    }
    if (record.invocationType === 'DryRun') return reply(204, null, '');

    const failure = failures.get(record.functionName);
    const failing = failure && failure.count > 0 ? failure.kind : null;
    if (failing) failure.count -= 1;
    if (failing === 'service') return reply(500, 'ServiceException', 'failing on purpose');
    if (record.invocationType === 'Event') return reply(202, null, '');
    if (failing === 'function') {
      record.functionError = 'Unhandled';
      return reply(200, null, JSON.stringify({ errorType: 'Error', errorMessage: 'failing on purpose' }), {
        'x-amz-function-error': 'Unhandled',
        'x-amz-executed-version': '$LATEST',
      });
    }
    return reply(200, null, JSON.stringify(endpoint.result), { 'x-amz-executed-version': '$LATEST' });
  }

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return endpoint;
}

// ---------------------------------------------------------------------------------------------
// SigV4, checked as AWS checks it
// ---------------------------------------------------------------------------------------------

const sha256Hex = (data) => crypto.createHash('sha256').update(data).digest('hex');
const hmac = (key, text) => crypto.createHmac('sha256', key).update(text).digest();

/** RFC 3986 encoding, as SigV4 wants it: everything but A-Z a-z 0-9 - _ . ~ as %XX. */
function uriEncode(text) {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * The credential scope, signed headers and the check of the signature of a request:
 * `{ credential, signedHeaders, signatureValid, signatureProblem }`. The canonical request is
 * built as for every service but S3 (each path segment encoded once more), from the request as
 * it arrived.
 */
function verifySignature(req, url, body, secretAccessKey) {
  const out = { credential: null, signedHeaders: null, signatureValid: false, signatureProblem: null };
  const authorization = req.headers.authorization ?? '';
  const parsed = /^AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)$/.exec(authorization.trim());
  if (!parsed) {
    out.signatureProblem = authorization ? `an Authorization header that is not SigV4: ${authorization}` : 'no Authorization header';
    return out;
  }
  const [, credentialText, signedHeadersText, signature] = parsed;
  const [accessKeyId, date, region, service, terminal] = credentialText.split('/');
  out.credential = { accessKeyId, date, region, service, terminal };
  out.signedHeaders = signedHeadersText.split(';');

  const amzDate = req.headers['x-amz-date'];
  if (!amzDate || !/^\d{8}T\d{6}Z$/.test(amzDate)) {
    out.signatureProblem = `X-Amz-Date missing or malformed: ${amzDate}`;
    return out;
  }
  if (amzDate.slice(0, 8) !== date) {
    out.signatureProblem = `the credential's date ${date} is not X-Amz-Date's ${amzDate}`;
    return out;
  }
  const when = Date.parse(`${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13)}`);
  if (!(Math.abs(when - Date.now()) <= MAX_SKEW_MS)) {
    out.signatureProblem = `X-Amz-Date ${amzDate} is more than 5 minutes from now`;
    return out;
  }
  if (terminal !== 'aws4_request') {
    out.signatureProblem = `the credential scope ends in ${terminal}, not aws4_request`;
    return out;
  }
  for (const name of ['host', 'x-amz-date']) {
    if (!out.signedHeaders.includes(name)) {
      out.signatureProblem = `${name} is not among the signed headers ${signedHeadersText}`;
      return out;
    }
  }

  const canonicalUri = url.pathname
    .split('/')
    .map((segment) => uriEncode(segment))
    .join('/');
  const canonicalQuery = [...url.searchParams.entries()]
    .map(([k, v]) => [uriEncode(k), uriEncode(v)])
    .sort(([ak, av], [bk, bv]) => (ak === bk ? (av < bv ? -1 : av > bv ? 1 : 0) : ak < bk ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const distinct = req.headersDistinct;
  const canonicalHeaders = out.signedHeaders
    .map((name) => `${name}:${(distinct[name] ?? []).map((v) => v.trim().replace(/\s+/g, ' ')).join(',')}\n`)
    .join('');
  const declaredHash = req.headers['x-amz-content-sha256'];
  const bodyHash = sha256Hex(body);
  if (declaredHash && declaredHash !== 'UNSIGNED-PAYLOAD' && declaredHash !== bodyHash) {
    out.signatureProblem = `X-Amz-Content-Sha256 ${declaredHash} is not the body's hash ${bodyHash}`;
    return out;
  }
  const canonicalRequest = [req.method, canonicalUri, canonicalQuery, canonicalHeaders, signedHeadersText, declaredHash ?? bodyHash].join('\n');
  const scope = `${date}/${region}/${service}/${terminal}`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  const key = [date, region, service, terminal].reduce((k, part) => hmac(k, part), `AWS4${secretAccessKey}`);
  const expected = hmac(key, stringToSign).toString('hex');
  if (expected !== signature) {
    out.signatureProblem =
      'The request signature we calculated does not match the signature you provided. ' +
      `The canonical request was:\n${canonicalRequest}\nThe string to sign was:\n${stringToSign}`;
    return out;
  }
  out.signatureValid = true;
  return out;
}
