// Webhooks that invoke an AWS Lambda function (`lambda_function` in place of `url`), as soketi
// sends them: an Invoke of the function with `{ payload, headers }` as its event, `payload`
// being the webhook body (`{ time_ms, events }`) and `headers` what an HTTP webhook would carry
// (X-Pusher-Key, X-Pusher-Signature over JSON.stringify(payload), the webhook's own headers).
//
// moto's Lambda runs functions in Docker, which the test machines do not have, so the function is
// lambda-endpoint.mjs: a small HTTP server that speaks Lambda's Invoke API (SigV4 checked with the
// secret key `test`, RequestResponse answered 200 with a result, Event 202, failures on demand)
// and records each invocation. The server reaches it through the webhook's
// `lambda.client_options.endpoint` (soketi's AWS client options), or AWS_ENDPOINT_URL_LAMBDA
// (the AWS SDKs' own override). The last block reads such a webhook from a DynamoDB item (moto).
//
// Each function of the default app's webhooks has a channel prefix of its own (a `filter`), so
// that each test sees only its own invocations.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';

import { APP, Scope, failedStart, freePort, startServer, uniqueChannel, writeConfig } from './harness.mjs';
import { awsEnv, createAppsTable, motoSkip, putApp, startMoto } from './aws.mjs';
import { startLambdaEndpoint } from './lambda-endpoint.mjs';
import { CUSTOM_HEADERS, DEFAULT_APP, hmacHex, hooksEnv, sdkValid } from './webhook-checks.mjs';

const QUEUE_BACKOFF_MS = 100;
/** A retry comes after a few backoffs, and the AWS SDK's own retries; room for a busy machine. */
const INVOKE_WAIT_MS = 15_000;

/** A header of the invocation's `headers` object, whatever the case of its name. */
function header(headers, name) {
  const found = Object.entries(headers ?? {}).find(([key]) => key.toLowerCase() === name.toLowerCase());
  return found?.[1];
}

/**
 * Asserts what every invocation of a webhook of `app` carries: a valid SigV4 signature for the
 * `test` key, service `lambda` in `region`; a JSON event `{ payload, headers }` whose payload is
 * `{ time_ms, events }`, and whose headers hold the app key, the signature of
 * JSON.stringify(payload) with the app secret (which the official SDK accepts), and `headers`.
 */
function assertInvocation(invocation, { app = DEFAULT_APP, region = 'us-east-1', headers = {} } = {}) {
  const where = `invocation #${invocation.seq} of ${invocation.functionName}: ${invocation.rawBody}`;
  assert.equal(invocation.signatureValid, true, `SigV4: ${invocation.signatureProblem}; ${where}`);
  assert.deepEqual(
    invocation.credential,
    { accessKeyId: 'test', date: invocation.headers['x-amz-date'].slice(0, 8), region, service: 'lambda', terminal: 'aws4_request' },
    `the credential scope; ${where}`,
  );
  assert.ok(invocation.json && typeof invocation.json === 'object', `a JSON event; ${where}`);
  assert.deepEqual(Object.keys(invocation.json).sort(), ['headers', 'payload'], `the event's keys; ${where}`);
  const { payload, headers: sent } = invocation.json;
  assert.deepEqual(Object.keys(payload).sort(), ['events', 'time_ms'], `the payload's keys; ${where}`);
  assert.ok(Number.isInteger(payload.time_ms) && Math.abs(payload.time_ms - invocation.at) < 60_000, `time_ms is about now; ${where}`);
  assert.ok(Array.isArray(payload.events) && payload.events.length >= 1, `a non-empty events array; ${where}`);
  assert.equal(header(sent, 'X-Pusher-Key'), app.key, `X-Pusher-Key; ${where}`);
  const body = JSON.stringify(payload);
  assert.equal(header(sent, 'X-Pusher-Signature'), hmacHex(app.secret, body), `X-Pusher-Signature of JSON.stringify(payload); ${where}`);
  // As a function would hand its event to the SDK: header names in lower case, and the body,
  // JSON by construction, as JSON (soketi's headers carry that Content-Type; no need to rely on it).
  const lowered = Object.fromEntries(Object.entries(sent).map(([k, v]) => [k.toLowerCase(), v]));
  const request = { headers: { ...lowered, 'content-type': 'application/json' }, rawBody: body };
  assert.equal(sdkValid(request, app), true, `the pusher SDK's webhook(...).isValid(); ${where}`);
  for (const [name, value] of Object.entries(headers)) assert.equal(header(sent, name), value, `custom header ${name}; ${where}`);
}

/** The invocations of `functionName` since `since` whose event is about `channel`. */
function invocationsFor(lambda, functionName, channel, since = 0) {
  return lambda.of(functionName, since).filter((i) => i.json?.payload?.events?.some((e) => e.channel === channel));
}

/**
 * Registers suite hooks that start a Lambda endpoint, then a server configured by
 * `setup(lambda)` (which returns, or resolves with, `{ env, options }`), and stop both at the
 * end. Returns `{ lambda, scope }`; when a test fails, the server's output and the invocations
 * during the test follow the failure.
 */
function useLambdaServer(setup) {
  const ctx = { lambda: null, scope: new Scope() };
  let logMark = 0;
  let invocationMark = 0;
  before(async () => {
    ctx.lambda = await startLambdaEndpoint();
    const { env, options = {} } = await setup(ctx.lambda);
    ctx.scope.server = await startServer(env, options);
  });
  beforeEach(() => {
    logMark = ctx.scope.server?.logMark() ?? 0;
    invocationMark = ctx.lambda?.mark() ?? 0;
  });
  afterEach((t) => {
    if (t.passed === false) {
      ctx.scope.server?.dumpLogs(`test "${t.name}" failed`, logMark);
      process.stderr.write(`\n----- Lambda invocations during "${t.name}" -----\n  ${ctx.lambda?.describe(invocationMark)}\n-----\n`);
    }
    ctx.scope.closeClients();
  });
  after(async () => {
    ctx.scope.closeClients();
    await ctx.scope.server?.stop();
    await ctx.lambda?.close();
  });
  return ctx;
}

describe('Lambda webhooks (lambda_function) through lambda.client_options.endpoint', () => {
  const ctx = useLambdaServer((lambda) => {
    const clientOptions = { endpoint: lambda.endpoint };
    const hook = (functionName, prefix, lambdaOptions, extra = {}) => ({
      lambda_function: functionName,
      event_types: ['channel_occupied'],
      filter: { channel_name_starts_with: prefix },
      lambda: { ...lambdaOptions, client_options: clientOptions },
      ...extra,
    });
    return {
      env: awsEnv({
        SOKETI_QUEUE_BACKOFF: String(QUEUE_BACKOFF_MS),
        ...hooksEnv([
          hook('my-fn', 'sync-', { async: false, region: 'us-east-1' }, { headers: CUSTOM_HEADERS }),
          hook('my-async-fn', 'async-', { async: true, region: 'eu-central-1' }),
          // Neither `async` nor `region`: RequestResponse in us-east-1, soketi's defaults.
          hook('flaky-fn', 'flaky-', {}),
          hook('throwing-fn', 'throws-', {}),
        ]),
      }),
    };
  });

  it('RequestResponse: channel_occupied invokes the function once with {payload, headers}, signed for lambda in us-east-1; the payload signature checks out', async () => {
    const { lambda, scope } = ctx;
    const since = lambda.mark();
    const name = uniqueChannel('sync-');
    await scope.rawSubscribed(name);
    const [invocation] = await lambda.waitFor((i) => i.rawBody.includes(name), 1, { since, what: `the invocation for ${name}` });
    assert.equal(invocation.functionName, 'my-fn');
    assert.equal(invocation.invocationType, 'RequestResponse');
    assert.equal(invocation.status, 200, lambda.describe(since));
    assertInvocation(invocation, { headers: CUSTOM_HEADERS });
    assert.deepEqual(invocation.json.payload.events, [{ name: 'channel_occupied', channel: name }]);

    // Once: a channel occupied after it is invoked after any second invocation would have been.
    const sentinel = uniqueChannel('sync-');
    await scope.rawSubscribed(sentinel);
    await lambda.waitFor((i) => i.rawBody.includes(sentinel), 1, { since, what: `the invocation for ${sentinel}` });
    assert.equal(invocationsFor(lambda, 'my-fn', name, since).length, 1, lambda.describe(since));
    // Nothing went to the functions of the other prefixes.
    assert.deepEqual(lambda.invocations.slice(since).filter((i) => i.functionName !== 'my-fn').map((i) => i.functionName), []);
  });

  it('async: true invokes with InvocationType Event (answered 202), signed for the region of lambda.region', async () => {
    const { lambda, scope } = ctx;
    const since = lambda.mark();
    const name = uniqueChannel('async-');
    await scope.rawSubscribed(name);
    const [invocation] = await lambda.waitFor((i) => i.rawBody.includes(name), 1, { since, what: `the invocation for ${name}` });
    assert.equal(invocation.functionName, 'my-async-fn');
    assert.equal(invocation.invocationType, 'Event');
    assert.equal(invocation.status, 202, lambda.describe(since));
    assertInvocation(invocation, { region: 'eu-central-1' });
    assert.deepEqual(invocation.json.payload.events, [{ name: 'channel_occupied', channel: name }]);
  });

  it('Lambda failing with 500 (ServiceException) twice: invoked again until it answers, then not again', async (t) => {
    const { lambda, scope } = ctx;
    const since = lambda.mark();
    lambda.fail('flaky-fn', 2, 'service');
    const name = uniqueChannel('flaky-');
    await scope.rawSubscribed(name);
    await lambda.waitFor((i) => i.rawBody.includes(name) && i.status === 200, 1, { since, timeout: INVOKE_WAIT_MS, what: `a successful invocation for ${name}` });
    const sentinel = uniqueChannel('flaky-');
    await scope.rawSubscribed(sentinel);
    await lambda.waitFor((i) => i.rawBody.includes(sentinel) && i.status === 200, 1, { since, timeout: INVOKE_WAIT_MS, what: `the invocation for ${sentinel}` });

    const attempts = invocationsFor(lambda, 'flaky-fn', name, since);
    t.diagnostic(`attempts at +${attempts.map((i) => i.at - attempts[0].at).join(' ms, +')} ms`);
    assert.deepEqual(attempts.map((i) => i.status), [500, 500, 200], `two failures, then one success, and nothing after it: ${lambda.describe(since)}`);
    for (const attempt of attempts) assertInvocation(attempt);
  });

  it('a function that throws (200 with X-Amz-Function-Error: Unhandled) is invoked again, then not again', async (t) => {
    const { lambda, scope } = ctx;
    const since = lambda.mark();
    lambda.fail('throwing-fn', 1, 'function');
    const name = uniqueChannel('throws-');
    await scope.rawSubscribed(name);
    await lambda.waitFor((i) => i.rawBody.includes(name) && i.status === 200 && !i.functionError, 1, {
      since,
      timeout: INVOKE_WAIT_MS,
      what: `an invocation for ${name} that does not throw`,
    });
    const sentinel = uniqueChannel('throws-');
    await scope.rawSubscribed(sentinel);
    await lambda.waitFor((i) => i.rawBody.includes(sentinel), 1, { since, timeout: INVOKE_WAIT_MS, what: `the invocation for ${sentinel}` });

    const attempts = invocationsFor(lambda, 'throwing-fn', name, since);
    t.diagnostic(`attempts: ${attempts.map((i) => `${i.status}${i.functionError ? ` ${i.functionError}` : ''} at +${i.at - attempts[0].at} ms`).join(', ')}`);
    assert.deepEqual(
      attempts.map((i) => i.functionError),
      ['Unhandled', null],
      `the function threw once, then one invocation succeeded, and nothing after it: ${lambda.describe(since)}`,
    );
  });
});

describe('Lambda webhooks through AWS_ENDPOINT_URL_LAMBDA (the AWS SDK’s endpoint override)', () => {
  const ctx = useLambdaServer((lambda) => ({
    env: awsEnv({
      AWS_ENDPOINT_URL_LAMBDA: lambda.endpoint,
      ...hooksEnv([{ lambda_function: 'env-fn', event_types: ['channel_occupied'], lambda: { async: false, region: 'us-east-1' } }]),
    }),
  }));

  it('a webhook without client_options invokes the function at the endpoint of AWS_ENDPOINT_URL_LAMBDA', async () => {
    const { lambda, scope } = ctx;
    const since = lambda.mark();
    const name = uniqueChannel('env-');
    await scope.rawSubscribed(name);
    const [invocation] = await lambda.waitFor((i) => i.rawBody.includes(name), 1, { since, what: `the invocation for ${name}` });
    assert.equal(invocation.functionName, 'env-fn');
    assert.equal(invocation.invocationType, 'RequestResponse');
    assertInvocation(invocation);
  });
});

const TABLE_APP = Object.freeze({ id: 'lambda-table-id', key: 'lambda-table-key', secret: 'lambda-table-secret' });

describe("a Lambda webhook in a DynamoDB item's Webhooks (moto)", { skip: motoSkip() }, () => {
  let moto = null;
  const ctx = useLambdaServer(async (lambda) => {
    moto = await startMoto();
    await createAppsTable(moto, 'apps');
    const webhook = {
      lambda_function: 'table-fn',
      event_types: ['channel_occupied'],
      lambda: { async: false, region: 'us-east-1', client_options: { endpoint: lambda.endpoint } },
    };
    await putApp(moto, 'apps', { ...TABLE_APP, Webhooks: [webhook] });
    return { env: awsEnv({ SOKETI_APP_MANAGER_DRIVER: 'dynamodb', SOKETI_APP_MANAGER_DYNAMODB_ENDPOINT: moto.endpoint }) };
  });
  // After useLambdaServer's own `after`, which stops the server first.
  after(async () => {
    await moto?.stop();
  });

  it("channel_occupied invokes the item's function, with the item's key and signed with its secret", async () => {
    const { lambda, scope } = ctx;
    const since = lambda.mark();
    const name = uniqueChannel('table-');
    await scope.forApp(TABLE_APP).rawSubscribed(name);
    const [invocation] = await lambda.waitFor((i) => i.rawBody.includes(name), 1, { since, what: `the invocation for ${name}` });
    assert.equal(invocation.functionName, 'table-fn');
    assert.equal(invocation.invocationType, 'RequestResponse');
    assertInvocation(invocation, { app: TABLE_APP });
    assert.deepEqual(invocation.json.payload.events, [{ name: 'channel_occupied', channel: name }]);
  });
});

describe('start-up', () => {
  it('an app whose webhook has neither url nor lambda_function stops start-up with a line naming the app', async () => {
    const file = writeConfig('lambda-no-target.json', {
      appManager: {
        array: {
          apps: [
            { id: APP.appId, key: APP.key, secret: APP.secret },
            { id: 'no-target-id', key: 'no-target-key', secret: 'no-target-secret', webhooks: [{ event_types: ['channel_occupied'] }] },
          ],
        },
      },
    });
    const env = {
      SOKETI_HOST: '127.0.0.1',
      SOKETI_PORT: String(await freePort()),
      SOKETI_METRICS_HOST: '127.0.0.1',
      SOKETI_METRICS_SERVER_PORT: String(await freePort()),
    };
    const failure = await failedStart(['start', '--config', file], env);
    const line = failure.lines.find((l) => l.includes('no-target-id') && /url|lambda_function/.test(l));
    assert.ok(line, `expected a stderr line naming no-target-id and url or lambda_function; stderr:\n${failure.run.stderr || '(empty)'}`);
  });
});
