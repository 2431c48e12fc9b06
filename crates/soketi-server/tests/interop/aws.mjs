// Helpers for the tests of the AWS drivers (aws-dynamodb, aws-sqs and aws-lambda .test.mjs): a
// throwaway `moto_server` (the Python package moto in server mode, a real AWS API server that
// keeps everything in memory) on a free loopback port, a small client of the two JSON APIs the
// tests set things up with (DynamoDB and SQS), soketi's DynamoDB item layout, and the
// environment that keeps the server's AWS SDK on loopback.
//
// moto_server is taken from SOKETI_TEST_MOTO, else from target/moto-venv/bin/moto_server under
// the repository root: `cargo xtask test` makes that virtual environment from
// xtask/moto-requirements.txt before the interop suite, and passes its path in SOKETI_TEST_MOTO.
// Without it the tests are skipped (`motoSkip()`), except with SOKETI_TEST_REQUIRE_ALL=1 (set by
// `cargo xtask test`), where they fail with the reason instead.
//
// moto checks no signature, but answers 500 to a request without a SigV4-shaped Authorization
// header, so this client sends one with a dummy signature. moto takes the region from that
// header's credential scope and the account from the access key, as AWS does: the server and the
// tests both use `test` in us-east-1, so they see the same tables and queues.

import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';

import { REPO_ROOT, freePort, httpRequest, scratch } from './harness.mjs';

const READY_DEADLINE_MS = 20_000;
const READY_POLL_MS = 50;
const STOP_GRACE_MS = 5_000;
const CALL_TIMEOUT_MS = 10_000;
const MAX_LOG_CHARS = 64 * 1024;

/** The region every test uses, for the server and for moto. */
export const REGION = 'us-east-1';

/** The virtual environment `cargo xtask test` makes, relative to the repository root. */
const DEFAULT_MOTO = path.join(REPO_ROOT, 'target', 'moto-venv', 'bin', 'moto_server');

const HOW_TO_GET =
  '`cargo xtask test` makes it (python3 -m venv target/moto-venv, then pip install -r xtask/moto-requirements.txt), ' +
  'or set SOKETI_TEST_MOTO to a moto_server';

const liveChildren = new Set();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

/** `{ path }` of the moto_server to run, or `{ path: null, reason }` when there is none. */
export function motoServerBinary() {
  const configured = process.env.SOKETI_TEST_MOTO;
  const candidate = configured || DEFAULT_MOTO;
  try {
    accessSync(candidate, constants.X_OK);
    return { path: candidate };
  } catch {
    const where = configured ? `SOKETI_TEST_MOTO=${configured} is not an executable file` : `no moto_server at ${candidate}`;
    return { path: null, reason: `the AWS driver tests need moto_server (moto in server mode): ${where}; ${HOW_TO_GET}` };
  }
}

/**
 * The `skip` option of a `describe` that needs moto_server: false when it is there, or when
 * SOKETI_TEST_REQUIRE_ALL=1 (then `startMoto` fails with the reason instead), and the reason
 * otherwise.
 */
export function motoSkip() {
  const found = motoServerBinary();
  if (found.path) return false;
  if (process.env.SOKETI_TEST_REQUIRE_ALL === '1') return false;
  return `${found.reason} (SOKETI_TEST_REQUIRE_ALL=1 makes this a failure)`;
}

/**
 * The environment the server needs for its AWS SDK: fixed credentials, the region, and no
 * lookup that could leave loopback (the EC2 instance metadata service) or read the machine's
 * own AWS configuration. The harness drops every inherited `AWS_*` variable from a child's
 * environment, so these are all it gets.
 */
export function awsEnv(extra = {}) {
  return {
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_REGION: REGION,
    AWS_DEFAULT_REGION: REGION,
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_CONFIG_FILE: path.join(scratch(), 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(scratch(), 'no-aws-credentials'),
    ...extra,
  };
}

/**
 * Starts moto_server on a free loopback port (or `port`) and waits until it answers HTTP.
 * Resolves with:
 * - `port`, `endpoint` (`http://127.0.0.1:<port>`, what the server's `*_ENDPOINT` options take);
 * - `call(service, target, body)`: one request of the JSON protocol (`dynamodb` or `sqs`, a
 *   target such as `DynamoDB_20120810.GetItem` or `AmazonSQS.SendMessage`); resolves with the
 *   parsed answer, and rejects with AWS's error type and message on a non-2xx answer;
 * - `logs()`: the tail of what it printed (every request it served);
 * - `stop()`: SIGTERM, SIGKILL after a grace period; everything it held is gone.
 */
export async function startMoto({ port } = {}) {
  const { path: bin, reason } = motoServerBinary();
  if (!bin) throw new Error(`SOKETI_TEST_REQUIRE_ALL=1 and ${reason}`);
  const motoPort = port ?? (await freePort());
  const endpoint = `http://127.0.0.1:${motoPort}`;
  const child = spawn(bin, ['-H', '127.0.0.1', '-p', String(motoPort)], {
    cwd: scratch(),
    env: { ...process.env, PYTHONUNBUFFERED: '1' },
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
  const spawnError = new Promise((_, reject) => child.on('error', reject));
  const earlyExit = exited.then(({ code, signal }) => {
    throw new Error(`moto_server exited before answering (code ${code}, signal ${signal})`);
  });
  spawnError.catch(() => {});
  earlyExit.catch(() => {});
  try {
    await Promise.race([waitHttp(endpoint), spawnError, earlyExit]);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`moto_server (${bin}) on port ${motoPort} did not start: ${err.message}\nIts output:\n${log}`);
  }

  return {
    port: motoPort,
    endpoint,
    pid: child.pid,
    logs: () => log,
    call: (service, target, body) => awsCall(endpoint, service, target, body),
    async stop() {
      if (exitInfo) return exitInfo;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      try {
        return await exited;
      } finally {
        clearTimeout(killer);
      }
    },
  };
}

/** Resolves once `endpoint` answers any HTTP request, retrying until the deadline. */
async function waitHttp(endpoint) {
  const deadline = Date.now() + READY_DEADLINE_MS;
  let lastError = 'no answer yet';
  while (Date.now() < deadline) {
    try {
      await httpRequest(`${endpoint}/moto-api/data.json`, { timeout: 1_000 });
      return;
    } catch (err) {
      lastError = err.code ?? err.message;
    }
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
  }
  throw new Error(`no HTTP answer within ${READY_DEADLINE_MS} ms (${lastError})`);
}

/** `YYYYMMDD'T'HHMMSS'Z'`, the form of X-Amz-Date. */
function amzDate(date = new Date()) {
  return date.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

/**
 * One request of AWS's JSON protocol (version 1.0, which DynamoDB and SQS both speak) to
 * `endpoint`, with a SigV4-shaped Authorization header for the `test` key in REGION.
 */
export async function awsCall(endpoint, service, target, body = {}) {
  const date = amzDate();
  const res = await fetch(`${endpoint}/`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-amz-json-1.0',
      'x-amz-target': target,
      'x-amz-date': date,
      authorization:
        `AWS4-HMAC-SHA256 Credential=test/${date.slice(0, 8)}/${REGION}/${service}/aws4_request, ` +
        'SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=00',
    },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
  });
  const text = await res.text();
  let json;
  try {
    json = text === '' ? {} : JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (!res.ok || json === undefined) {
    const type = json?.__type ?? res.headers.get('x-amzn-errortype') ?? 'unknown error';
    const message = json?.message ?? json?.Message ?? text;
    throw new Error(`${target} answered ${res.status}: ${type}: ${message}`);
  }
  return json;
}

// ---------------------------------------------------------------------------------------------
// DynamoDB: soketi's table of apps
// ---------------------------------------------------------------------------------------------

const DYNAMODB = 'DynamoDB_20120810';

/**
 * Creates a table in soketi's layout: hash key `AppId` (S), and the global secondary index
 * `AppKeyIndex` on `AppKey` (S) with every attribute projected, which soketi queries by key.
 * On-demand billing, so that neither the table nor its index needs a throughput.
 */
export async function createAppsTable(moto, table = 'apps') {
  await moto.call('dynamodb', `${DYNAMODB}.CreateTable`, {
    TableName: table,
    AttributeDefinitions: [
      { AttributeName: 'AppId', AttributeType: 'S' },
      { AttributeName: 'AppKey', AttributeType: 'S' },
    ],
    KeySchema: [{ AttributeName: 'AppId', KeyType: 'HASH' }],
    GlobalSecondaryIndexes: [
      {
        IndexName: 'AppKeyIndex',
        KeySchema: [{ AttributeName: 'AppKey', KeyType: 'HASH' }],
        Projection: { ProjectionType: 'ALL' },
      },
    ],
    BillingMode: 'PAY_PER_REQUEST',
  });
}

/** The bytes of `text` as a DynamoDB binary value (base64 on the wire), as soketi stores its flags. */
export const binaryText = (text) => ({ B: Buffer.from(text, 'utf8').toString('base64') });

const ATTRIBUTE_TYPES = new Set(['S', 'N', 'B', 'BOOL', 'NULL', 'M', 'L', 'SS', 'NS', 'BS']);

/** Whether `value` is already a DynamoDB attribute value (`{ BOOL: false }`, `{ N: '1' }`, ...). */
function isAttributeValue(value) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const keys = Object.keys(value);
  return keys.length === 1 && ATTRIBUTE_TYPES.has(keys[0]);
}

/**
 * A field of an app as soketi stores it: numbers as N, booleans as the bytes of the text
 * "true" or "false" (B, as soketi's docs write them), strings as S, and anything else (the
 * webhook list) as its JSON text (S). An attribute value is kept as it is.
 */
function attributeValue(value) {
  if (isAttributeValue(value)) return value;
  if (typeof value === 'number') return { N: String(value) };
  if (typeof value === 'boolean') return binaryText(String(value));
  if (typeof value === 'string') return { S: value };
  return { S: JSON.stringify(value) };
}

/**
 * An item in soketi's layout for the app `{ id, key, secret, ...fields }`, with the attributes
 * soketi's docs put in every item (unlimited quotas, client messages off, enabled, no
 * webhooks), then `fields` by their attribute names (`MaxConnections: 1`, `Enabled: false`,
 * `Enabled: { BOOL: false }`, `Webhooks: [...]`, `MaxChannelNameLength: 40`); a field set to
 * `undefined` leaves the attribute out.
 */
export function appItem({ id, key, secret, ...fields }) {
  const item = {
    AppId: { S: id },
    AppKey: { S: key },
    AppSecret: { S: secret },
    MaxConnections: { N: '-1' },
    EnableClientMessages: binaryText('false'),
    Enabled: binaryText('true'),
    MaxBackendEventsPerSecond: { N: '-1' },
    MaxClientEventsPerSecond: { N: '-1' },
    MaxReadRequestsPerSecond: { N: '-1' },
    Webhooks: { S: '[]' },
    EnableUserAuthentication: binaryText('false'),
  };
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined) delete item[name];
    else item[name] = attributeValue(value);
  }
  return item;
}

/** Puts the app `{ id, key, secret, ...fields }` (see `appItem`) in `table`, replacing any item of that id. */
export async function putApp(moto, table, app) {
  await moto.call('dynamodb', `${DYNAMODB}.PutItem`, { TableName: table, Item: appItem(app) });
}

/** Sets some attributes of the item with this id (`{ Enabled: false }`, as in `appItem`). */
export async function updateApp(moto, table, id, fields) {
  const names = Object.keys(fields);
  await moto.call('dynamodb', `${DYNAMODB}.UpdateItem`, {
    TableName: table,
    Key: { AppId: { S: id } },
    UpdateExpression: `SET ${names.map((_, i) => `#f${i} = :v${i}`).join(', ')}`,
    ExpressionAttributeNames: Object.fromEntries(names.map((name, i) => [`#f${i}`, name])),
    ExpressionAttributeValues: Object.fromEntries(names.map((name, i) => [`:v${i}`, attributeValue(fields[name])])),
  });
}

/** The item with this id, as soketi reads it by id (GetItem), or null. */
export async function getApp(moto, table, id) {
  const { Item } = await moto.call('dynamodb', `${DYNAMODB}.GetItem`, { TableName: table, Key: { AppId: { S: id } } });
  return Item ?? null;
}

/** The items with this key, as soketi reads them by key (Query on AppKeyIndex). */
export async function queryAppKey(moto, table, key) {
  const { Items } = await moto.call('dynamodb', `${DYNAMODB}.Query`, {
    TableName: table,
    IndexName: 'AppKeyIndex',
    KeyConditionExpression: 'AppKey = :key',
    ExpressionAttributeValues: { ':key': { S: key } },
    Limit: 1,
  });
  return Items;
}

// ---------------------------------------------------------------------------------------------
// SQS: the webhook queue
// ---------------------------------------------------------------------------------------------

/**
 * Creates a queue and resolves with its QueueUrl (moto makes it from the endpoint's address,
 * so the URL itself leads to moto). A name ending in `.fifo` makes a FIFO queue. `attributes`
 * are SQS's queue attributes (strings), for example `{ VisibilityTimeout: '5' }`.
 */
export async function createQueue(moto, name, attributes = {}) {
  const fifo = name.endsWith('.fifo') ? { FifoQueue: 'true' } : {};
  const { QueueUrl } = await moto.call('sqs', 'AmazonSQS.CreateQueue', {
    QueueName: name,
    Attributes: { ...fifo, ...attributes },
  });
  return QueueUrl;
}

/**
 * The queue's messages as SQS counts them: `{ visible, inFlight, delayed }` (received and not
 * yet deleted or visible again; sent with a delay not yet over).
 */
export async function queueCounts(moto, queueUrl) {
  const { Attributes } = await moto.call('sqs', 'AmazonSQS.GetQueueAttributes', {
    QueueUrl: queueUrl,
    AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
  });
  return {
    visible: Number(Attributes.ApproximateNumberOfMessages),
    inFlight: Number(Attributes.ApproximateNumberOfMessagesNotVisible),
    delayed: Number(Attributes.ApproximateNumberOfMessagesDelayed),
  };
}
