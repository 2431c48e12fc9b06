// Webhooks through an SQS queue (`QUEUE_DRIVER=sqs`), against moto's SQS on loopback (aws.mjs):
// each webhook delivered once and signed, through a standard queue and a FIFO one, retried after
// failures, kept in the queue across a SIGTERM and a new process while the receiver is down,
// batched with WEBHOOKS_BATCHING, and dropped after QUEUE_MAX_ATTEMPTS.
//
// Each test makes its own queue (so that what it reads of the queue is its own) with a visibility
// timeout of VISIBILITY_TIMEOUT_S. A message that a process received and did not delete (one that
// died, or one that a long poll it left behind at moto took after it stopped, as SQS does too) is
// visible again after that, or after the longer timeout a server asks for when it receives (this
// one asks for 30 s): that is what a restart costs. Retries wait QUEUE_BACKOFF=1000 ms, SQS's unit
// for delays being the second.
//
// To show that nothing arrives twice, a test waits until the queue is empty (no message visible,
// in flight or delayed, read twice a poll apart): a message is deleted only once delivered (or
// dropped), so no attempt can follow.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { uniqueChannel, until } from './harness.mjs';
import { awsEnv, createQueue, motoSkip, queueCounts, startMoto } from './aws.mjs';
import { useServersAndReceiver } from './webhook-receiver.mjs';
import { CUSTOM_HEADERS, assertSingle, assertWebhookRequest, countBy, hooksEnv, subscribeMany } from './webhook-checks.mjs';

const VISIBILITY_TIMEOUT_S = 5;
const QUEUE_BACKOFF_MS = 1_000;
const BATCHING_DURATION_MS = 1_000;
/**
 * How long a webhook may take to arrive through the queue: a few backoffs, or a message taken by
 * a stopped process coming back after the visibility timeout (the server's own, the webhook
 * timeout plus 5 s), with room for a busy machine.
 */
const DELIVERY_MS = 60_000;

describe('webhooks through SQS (QUEUE_DRIVER=sqs, moto)', { skip: motoSkip() }, () => {
  const suite = useServersAndReceiver({ name: 'moto_server', start: startMoto });
  const { start } = suite;
  let queues = 0;

  /** A new queue of this test's own, standard or FIFO; resolves with its URL. */
  async function newQueue({ fifo = false } = {}) {
    queues += 1;
    const name = `soketi-webhooks-${process.pid}-${queues}${fifo ? '.fifo' : ''}`;
    return createQueue(suite.service, name, { VisibilityTimeout: String(VISIBILITY_TIMEOUT_S) });
  }

  /** The environment of a server with the SQS queue at `queueUrl`, posting `types` to `path`. */
  function queueEnv(queueUrl, path, { types = ['channel_occupied'], ...extra } = {}) {
    return awsEnv({
      SOKETI_QUEUE_BACKOFF: String(QUEUE_BACKOFF_MS),
      // soketi's own names, without the SOKETI_ prefix.
      QUEUE_DRIVER: 'sqs',
      QUEUE_SQS_URL: queueUrl,
      QUEUE_SQS_REGION: 'us-east-1',
      QUEUE_SQS_ENDPOINT: suite.service.endpoint,
      ...hooksEnv([{ url: suite.receiver.url(path), event_types: types, headers: CUSTOM_HEADERS }]),
      ...extra,
    });
  }

  const total = (counts) => counts.visible + counts.inFlight + counts.delayed;

  /** Waits until the queue holds `count` messages in all (visible, in flight or delayed). */
  async function queueHolds(queueUrl, count, what) {
    let last = null;
    try {
      await until(
        async () => {
          last = await queueCounts(suite.service, queueUrl);
          return total(last) === count;
        },
        { timeout: 10_000, interval: 100, what: `${count} messages in the queue (${what})` },
      );
    } catch (err) {
      throw new Error(`${err.message}; last seen ${JSON.stringify(last)}`);
    }
  }

  /**
   * Waits until the queue is empty, read twice a poll apart: nothing visible, in flight or
   * delayed, so that no attempt can follow. A driver that retries by sending a delayed copy
   * before deleting the original is never seen empty in between.
   */
  async function queueDrained(queueUrl, what) {
    let emptyBefore = false;
    let last = null;
    try {
      await until(
        async () => {
          last = await queueCounts(suite.service, queueUrl);
          const empty = total(last) === 0;
          const twice = empty && emptyBefore;
          emptyBefore = empty;
          return twice;
        },
        { timeout: DELIVERY_MS, interval: 200, what: `the queue to be empty (${what})` },
      );
    } catch (err) {
      throw new Error(`${err.message}; last seen ${JSON.stringify(last)}`);
    }
  }

  for (const fifo of [false, true]) {
    const kind = fifo ? 'a FIFO queue (.fifo, FifoQueue=true)' : 'a standard queue';
    it(`${kind}: channel_occupied of 3 channels waits in the queue while the receiver refuses it, then each arrives once, signed`, async (t) => {
      const { receiver } = suite;
      const since = receiver.mark();
      const path = fifo ? '/fifo' : '/standard';
      const queueUrl = await newQueue({ fifo });
      const scope = await start('the server', queueEnv(queueUrl, path));
      const names = Array.from({ length: 3 }, (_, i) => uniqueChannel(`sqs-${fifo ? 'fifo' : 'std'}-${i}-`));
      const carries = (r) => names.some((name) => r.rawBody.includes(name));
      receiver.refusing = carries;
      try {
        const client = await scope.rawConnected();
        await subscribeMany(client, names);
        // Tried and refused; all three are messages in the queue. (Not each tried: in a FIFO
        // queue, the messages of one group wait behind the one being retried.)
        await receiver.waitForRequest((r) => r.status === 'reset' && carries(r), {
          since,
          timeout: DELIVERY_MS,
          what: `a refused attempt for one of ${names.join(', ')}`,
        });
        await queueHolds(queueUrl, names.length, 'the refused webhooks');
      } finally {
        receiver.refusing = false;
      }

      for (const channel of names) {
        const [event] = await receiver.waitForEvents({ name: 'channel_occupied', channel }, 1, { path, since, timeout: DELIVERY_MS });
        assertSingle(event);
      }
      await queueDrained(queueUrl, `the webhooks of ${names.join(', ')}`);
      const delivered = receiver.events({ path, since }).filter((e) => names.includes(e.channel));
      assert.deepEqual(countBy(delivered.map((e) => e.channel)), Object.fromEntries(names.map((c) => [c, 1])), 'each exactly once');
      const attempts = receiver.requests.slice(since).filter(carries);
      t.diagnostic(`attempts: ${attempts.map((r) => `${r.status} at +${r.at - attempts[0].at} ms`).join(', ')}`);
    });
  }

  it(`after two 500 answers, a later attempt delivers the event, once (QUEUE_BACKOFF ${QUEUE_BACKOFF_MS} ms)`, async (t) => {
    const { receiver } = suite;
    const since = receiver.mark();
    const path = '/retry';
    const queueUrl = await newQueue();
    const scope = await start('the server', queueEnv(queueUrl, path));
    const name = uniqueChannel('sqs-retry-');
    const carries = (r) => r.rawBody.includes(name);
    let refusals = 0;
    receiver.failing = (r) => carries(r) && (refusals += 1) <= 2;
    await scope.rawSubscribed(name);
    const [event] = await receiver.waitForEvents({ name: 'channel_occupied', channel: name }, 1, { path, since, timeout: DELIVERY_MS });
    assertSingle(event);
    await queueDrained(queueUrl, `the webhook of ${name}`);
    const attempts = receiver.requests.slice(since).filter(carries);
    t.diagnostic(`attempts at +${attempts.map((r) => r.at - attempts[0].at).join(' ms, +')} ms`);
    assert.deepEqual(attempts.map((r) => r.status), [500, 500, 200], `two failures, then one success, and nothing after it: ${receiver.describe(since)}`);
  });

  for (const mode of ['answers 500', 'is not listening']) {
    it(`webhooks survive a server restart: 5 webhooks while the receiver ${mode}, SIGTERM, then each delivered exactly once by a new process`, async (t) => {
      const { receiver } = suite;
      const since = receiver.mark();
      const path = mode === 'answers 500' ? '/restart-500' : '/restart-down';
      const queueUrl = await newQueue();
      // More attempts than the default 6, so that the time the restart takes cannot use them up.
      const env = queueEnv(queueUrl, path, { SOKETI_QUEUE_MAX_ATTEMPTS: '10' });
      const first = await start('the first server', env);
      if (mode === 'answers 500') receiver.failing = (r) => r.path === path;
      else await receiver.down();

      const names = Array.from({ length: 5 }, (_, i) => uniqueChannel(`sqs-restart-${i}-`));
      const client = await first.rawConnected();
      await subscribeMany(client, names);
      if (mode === 'answers 500') {
        // Every webhook has been tried (and refused) at least once before the server goes.
        await until(
          () => names.every((channel) => receiver.events({ path, since, accepted: false }).some((e) => e.channel === channel)),
          { timeout: DELIVERY_MS, what: `a failed attempt for each of ${names.join(', ')}; received: ${receiver.describe(since)}` },
        );
      }
      // The 5 webhooks are messages in the queue (which also shows that `queueDrained` below
      // reads the right queue).
      await queueHolds(queueUrl, 5, `the 5 webhooks of ${first.label}`);
      const exit = await first.server.stop();
      t.diagnostic(`the first server exited with ${JSON.stringify(exit)} after ${receiver.failed(since).length} refused attempts`);
      assert.equal(exit.code, 0, 'the first server exits cleanly on SIGTERM (a long poll in flight does not hold it)');
      assert.equal(receiver.accepted(since).length, 0, `nothing was accepted yet: ${receiver.describe(since)}`);

      receiver.failing = false;
      await receiver.up();
      const second = await start('the second server', env);
      const healthyAt = Date.now();
      for (const channel of names) {
        await receiver.waitForEvents({ name: 'channel_occupied', channel }, 1, { path, since, timeout: DELIVERY_MS });
      }
      t.diagnostic(`all 5 delivered within ${Date.now() - healthyAt} ms of the second server being ready`);

      await queueDrained(queueUrl, `the 5 webhooks on ${second.label}`);
      const delivered = receiver.events({ path, since }).filter((e) => names.includes(e.channel));
      assert.deepEqual(countBy(delivered.map((e) => e.channel)), Object.fromEntries(names.map((c) => [c, 1])), 'each exactly once');
      for (const event of delivered) assertWebhookRequest(event.request);
    });
  }

  it(`WEBHOOKS_BATCHING=true (${BATCHING_DURATION_MS} ms): a burst of 5 channel_occupied arrives in fewer bodies than events, each event once`, async (t) => {
    const { receiver } = suite;
    const since = receiver.mark();
    const path = '/batched';
    const queueUrl = await newQueue();
    const scope = await start(
      'the server',
      queueEnv(queueUrl, path, { SOKETI_WEBHOOKS_BATCHING: 'true', SOKETI_WEBHOOKS_BATCHING_DURATION: String(BATCHING_DURATION_MS) }),
    );
    const names = Array.from({ length: 5 }, (_, i) => uniqueChannel(`sqs-batch-${i}-`));
    const client = await scope.rawConnected();
    const startedAt = Date.now();
    await subscribeMany(client, names);
    const spanMs = Date.now() - startedAt;
    for (const channel of names) {
      await receiver.waitForEvents({ name: 'channel_occupied', channel }, 1, { path, since, timeout: DELIVERY_MS });
    }
    await queueDrained(queueUrl, `the batches of ${names.join(', ')}`);

    const requests = receiver.accepted(since).filter((r) => r.path === path);
    // A batch collects for BATCHING_DURATION_MS from its first event: a burst within one
    // duration (the usual case) fills one or two bodies, a longer one one more per duration.
    const most = Math.floor(spanMs / BATCHING_DURATION_MS) + 2;
    t.diagnostic(`${requests.length} bodies (${requests.map((r) => r.json.events.length).join(', ')} events) for a burst of ${spanMs} ms`);
    assert.ok(requests.length <= most, `at most ${most} bodies, got ${requests.length}: ${receiver.describe(since)}`);
    assert.ok(requests.some((r) => r.json.events.length >= 2), `several events in one body: ${receiver.describe(since)}`);
    for (const request of requests) assertWebhookRequest(request);
    const occupied = requests.flatMap((r) => r.json.events).filter((e) => e.name === 'channel_occupied');
    assert.deepEqual(occupied.map((e) => e.channel).sort(), [...names].sort(), 'each channel_occupied once');
  });

  it('a webhook that keeps failing is tried SOKETI_QUEUE_MAX_ATTEMPTS times, then dropped with a log line and deleted from the queue', async (t) => {
    const { receiver } = suite;
    const since = receiver.mark();
    const queueUrl = await newQueue();
    const scope = await start('the server', queueEnv(queueUrl, '/drop', { SOKETI_QUEUE_MAX_ATTEMPTS: '3' }));
    const name = uniqueChannel('sqs-drop-');
    receiver.failing = (r) => r.rawBody.includes(name);
    await scope.rawSubscribed(name);
    const attemptsOf = () => receiver.requests.slice(since).filter((r) => r.rawBody.includes(name));
    await until(() => attemptsOf().length >= 3, { timeout: DELIVERY_MS, what: `3 attempts for ${name}; received: ${receiver.describe(since)}` });

    await until(
      () =>
        scope.server
          .logs()
          .split('\n')
          .some((line) => (/webhook/i.test(line) || line.includes(receiver.url('/drop'))) && /(drop|gave up|giving up|discard|exhaust|abandon)/i.test(line)),
      { timeout: 10_000, what: `a log line about the dropped webhook; the output: ${scope.server.logs().slice(-4000)}` },
    );
    // Once the queue is empty, the dropped webhook is nowhere: no attempt can follow.
    await queueDrained(queueUrl, `after the drop of ${name}`);
    const attempts = attemptsOf();
    t.diagnostic(`attempts at +${attempts.map((r) => r.at - attempts[0].at).join(' ms, +')} ms`);
    assert.equal(attempts.length, 3, `exactly 3 attempts: ${receiver.describe(since)}`);
  });
});
