// What the webhook tests check of the requests a receiver (webhook-receiver.mjs) recorded: the
// headers and signature of a request, the events of a channel as compact tags, and how often
// each arrived. Shared by webhooks.test.mjs and the fleet suite (fleet-suite.mjs).

import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import PusherSdk from 'pusher';

import { APP } from './harness.mjs';

/** The credentials of the default app, as the webhook checks take them. */
export const DEFAULT_APP = Object.freeze({ id: APP.appId, key: APP.key, secret: APP.secret });

/** The custom headers every test webhook carries. */
export const CUSTOM_HEADERS = Object.freeze({ 'X-Custom': 'yes' });

/** The webhook list of SOKETI_DEFAULT_APP_WEBHOOKS, as JSON text. */
export const hooksEnv = (hooks) => ({ SOKETI_DEFAULT_APP_WEBHOOKS: JSON.stringify(hooks) });

/** Writes the requests a receiver got since `since` to stderr, when a test failed. */
export function dumpRequests(receiver, since, name) {
  if (!receiver) return;
  process.stderr.write(`\n----- webhook requests received during "${name}" -----\n  ${receiver.describe(since)}\n-----\n`);
}

/** `name:channel` (and `:user_id`) of each event, for compact comparisons. */
export const tags = (events) => events.map((e) => `${e.name}:${e.channel}${e.user_id === undefined ? '' : `:${e.user_id}`}`);

/** The events of `channel` received on `path` since `since` (accepted requests), as tags. */
export function channelTags(receiver, channel, { path = '/hook', since = 0 } = {}) {
  return tags(receiver.events({ path, since }).filter((e) => e.channel === channel));
}

/** How often each item of `list` occurs, as an object. */
export function countBy(list) {
  const counts = {};
  for (const item of list) counts[item] = (counts[item] ?? 0) + 1;
  return counts;
}

/** Whether the official SDK accepts the request as a webhook of `app` (`{ id, key, secret }`). */
export function sdkValid(request, app) {
  const sdk = new PusherSdk({ appId: app.id, key: app.key, secret: app.secret });
  return sdk.webhook({ headers: request.headers, rawBody: request.rawBody }).isValid();
}

export function hmacHex(secret, text) {
  return crypto.createHmac('sha256', secret).update(text).digest('hex');
}

/**
 * Asserts what every webhook request of `app` carries: a POST with `Content-Type:
 * application/json`, `X-Pusher-Key` (the app key, once), `X-Pusher-Signature` (the HMAC of the
 * raw body, which the official SDK accepts), the custom headers, and `{ time_ms, events }`.
 */
export function assertWebhookRequest(request, app = DEFAULT_APP, { headers = CUSTOM_HEADERS } = {}) {
  const where = `request #${request.seq} on ${request.path}: headers ${JSON.stringify(request.headers)} body ${request.rawBody}`;
  assert.equal(request.method, 'POST', where);
  assert.equal(request.headers['content-type'], 'application/json', `Content-Type; ${where}`);
  assert.equal(request.headers['x-pusher-key'], app.key, `X-Pusher-Key; ${where}`);
  assert.equal(request.headers['x-pusher-signature'], hmacHex(app.secret, request.rawBody), `X-Pusher-Signature; ${where}`);
  assert.equal(sdkValid(request, app), true, `the pusher SDK's webhook(...).isValid(); ${where}`);
  for (const [name, value] of Object.entries(headers)) {
    assert.equal(request.headers[name.toLowerCase()], value, `custom header ${name}; ${where}`);
  }
  assert.ok(request.json && typeof request.json === 'object', `a JSON object body; ${where}`);
  assert.deepEqual(Object.keys(request.json).sort(), ['events', 'time_ms'], `body keys; ${where}`);
  const { time_ms: timeMs, events } = request.json;
  assert.ok(Number.isInteger(timeMs), `time_ms is an integer; ${where}`);
  assert.ok(Math.abs(timeMs - request.at) < 60_000, `time_ms ${timeMs} is about now (${request.at}); ${where}`);
  assert.ok(Array.isArray(events) && events.length >= 1, `a non-empty events array; ${where}`);
}

/** Asserts that the event arrived alone in its body (no batching) and checks that body. */
export function assertSingle(event, app = DEFAULT_APP, opts) {
  assertWebhookRequest(event.request, app, opts);
  assert.equal(event.request.json.events.length, 1, `one event per body without batching: ${event.request.rawBody}`);
}

/** Subscribes a raw client to several channels at once (frames back to back), then awaits every answer. */
export async function subscribeMany(client, channels) {
  for (const channel of channels) client.send({ event: 'pusher:subscribe', data: { channel } });
  for (const channel of channels) {
    const frame = await client.next(
      (f) => f.channel === channel && /^pusher(_internal)?:subscription_(succeeded|error)$/.test(f.event),
    );
    assert.equal(frame.event, 'pusher_internal:subscription_succeeded', `subscription to ${channel}: ${JSON.stringify(frame)}`);
  }
}
