// Public, private, private-encrypted and cache channels: subscribing, authorization, and
// delivery of events published through the SDK.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  ENCRYPTED,
  connected,
  parseData,
  pusherServer,
  subscribe,
  subscribeData,
  uniqueChannel,
  waitFor,
  useServer,
} from './harness.mjs';

/** Asserts the `pusher:subscription_error` data Pusher sends for a failed authorization. */
function assertAuthError(data) {
  assert.equal(data.type, 'AuthError');
  assert.equal(typeof data.error, 'string');
  assert.equal(data.status, 401);
}

describe('channels', () => {
  const scope = useServer();

  describe('public', () => {
    it('answers pusher:subscribe with pusher_internal:subscription_succeeded', async () => {
      const channel = uniqueChannel();
      const client = await scope.rawConnected();
      const frame = await client.subscribe(channel);
      assert.equal(frame.event, 'pusher_internal:subscription_succeeded');
      assert.equal(frame.channel, channel);
    });

    it('fires subscription_succeeded in pusher-js and delivers SDK events with their data', async () => {
      const name = uniqueChannel();
      const client = await scope.connectedPusher();
      const { channel } = await subscribe(client, name);

      const received = waitFor(channel, 'greeting');
      const res = await scope.sdk().trigger(name, 'greeting', { text: 'hello', n: 1 });
      assert.equal(res.status, 200);
      assert.deepEqual(await received, { text: 'hello', n: 1 });
    });

    it('sends the event data on the wire as the JSON string the SDK published', async () => {
      const channel = uniqueChannel();
      const client = await scope.rawSubscribed(channel);
      await scope.sdk().trigger(channel, 'greeting', { text: 'hello' });
      const frame = await client.next('greeting');
      assert.equal(frame.channel, channel);
      assert.equal(frame.data, JSON.stringify({ text: 'hello' }));
    });

    it('sends no reply to pusher:unsubscribe and no more events for that channel', async () => {
      const left = uniqueChannel();
      const kept = uniqueChannel();
      const client = await scope.rawConnected();
      await client.subscribeOk(left);
      await client.subscribeOk(kept);

      client.send({ event: 'pusher:unsubscribe', data: { channel: left } });
      // The pong is answered after the unsubscribe was handled, so anything else in the queue
      // before it would be a reply to the unsubscribe.
      await client.ping();
      assert.deepEqual(client.queue, [], 'no reply to pusher:unsubscribe');

      const sdk = scope.sdk();
      await sdk.trigger(left, 'after-leaving', {});
      await sdk.trigger(kept, 'sentinel', {});
      // Events are delivered in publish order, so the sentinel arriving first proves the event
      // for the left channel was not sent.
      const next = await client.next((f) => typeof f.event === 'string' && !f.event.startsWith('pusher'));
      assert.equal(next.event, 'sentinel');
      assert.ok(!client.history.some((f) => f.event === 'after-leaving'));
    });
  });

  describe('private', () => {
    it('accepts a valid signature from pusher-js', async () => {
      const name = uniqueChannel('private-');
      const client = await scope.connectedPusher();
      const { channel } = await subscribe(client, name);
      assert.equal(channel.subscribed, true);

      const received = waitFor(channel, 'secret');
      await scope.sdk().trigger(name, 'secret', { ok: true });
      assert.deepEqual(await received, { ok: true });
    });

    it('refuses a bad signature with an AuthError of status 401', async () => {
      const channel = uniqueChannel('private-');
      const client = await scope.rawConnected();
      const { auth } = subscribeData(scope.server, '1234.5678', channel);
      const frame = await client.subscribe(channel, { auth });
      assert.equal(frame.event, 'pusher:subscription_error');
      assertAuthError(parseData(frame));
      await client.ping();
    });

    it('refuses a subscription without auth with an AuthError of status 401', async () => {
      const channel = uniqueChannel('private-');
      const client = await scope.rawConnected();
      const frame = await client.subscribe(channel);
      assert.equal(frame.event, 'pusher:subscription_error');
      assertAuthError(parseData(frame));
      await client.ping();
    });

    it('fires pusher:subscription_error in pusher-js for a signature made with another secret', async () => {
      const signer = pusherServer(scope.server, { secret: 'not-the-secret' });
      const client = await scope.connectedPusher({ signer });
      const err = await subscribe(client, uniqueChannel('private-')).then(
        () => assert.fail('the subscription should fail'),
        (e) => e,
      );
      assertAuthError(err.data);
    });
  });

  describe('private-encrypted', () => {
    it('delivers SDK-encrypted events that pusher-js decrypts', async () => {
      const name = uniqueChannel('private-encrypted-');
      const client = await scope.connectedPusher();
      const { channel } = await subscribe(client, name);

      const received = waitFor(channel, 'sealed');
      await scope.sdk(ENCRYPTED).trigger(name, 'sealed', { secret: 'plans' });
      assert.deepEqual(await received, { secret: 'plans' });
    });

    it('relays the ciphertext as is, never the plaintext', async () => {
      const channel = uniqueChannel('private-encrypted-');
      const client = await scope.rawSubscribed(channel);
      await scope.sdk(ENCRYPTED).trigger(channel, 'sealed', { secret: 'plans' });
      const data = parseData(await client.next('sealed'));
      assert.equal(typeof data.nonce, 'string');
      assert.equal(typeof data.ciphertext, 'string');
      assert.ok(!JSON.stringify(data).includes('plans'));
    });

    it('refuses a bad signature with an AuthError of status 401', async () => {
      const channel = uniqueChannel('private-encrypted-');
      const client = await scope.rawConnected();
      const frame = await client.subscribe(channel, { auth: `${scope.server.key}:${'0'.repeat(64)}` });
      assert.equal(frame.event, 'pusher:subscription_error');
      assertAuthError(parseData(frame));
    });
  });

  describe('cache', () => {
    const prefixes = ['cache-', 'private-cache-', 'presence-cache-', 'private-encrypted-cache-'];
    const member = { user_id: 'cache-user', user_info: { name: 'Cache' } };

    for (const prefix of prefixes) {
      it(`sends pusher:cache_miss on ${prefix} when nothing is cached`, async () => {
        const channel = uniqueChannel(prefix);
        const client = await scope.rawSubscribed(channel, member);
        // The miss comes right after subscription_succeeded.
        const frame = await client.next();
        assert.deepEqual(
          { event: frame.event, channel: frame.channel },
          { event: 'pusher:cache_miss', channel },
          `frames: ${client.describeHistory()}`,
        );
      });

      it(`sends the last event to a new ${prefix} subscriber right after subscription_succeeded`, async () => {
        const channel = uniqueChannel(prefix);
        const sdk = scope.sdk(ENCRYPTED);
        await sdk.trigger(channel, 'first', { n: 1 });
        await sdk.trigger(channel, 'last', { n: 2 });

        const client = await scope.rawSubscribed(channel, member);
        const frame = await client.next();
        assert.equal(frame.event, 'last', `frames: ${client.describeHistory()}`);
        assert.equal(frame.channel, channel);
        if (!prefix.startsWith('private-encrypted-')) assert.deepEqual(parseData(frame), { n: 2 });
      });
    }

    it('fires pusher:cache_miss on the pusher-js channel', async () => {
      const client = await scope.connectedPusher();
      const channel = client.subscribe(uniqueChannel('cache-'));
      await waitFor(channel, 'pusher:cache_miss');
      assert.equal(channel.subscribed, true);
    });

    it('gives pusher-js the cached event of a private-encrypted-cache channel, decrypted', async () => {
      const name = uniqueChannel('private-encrypted-cache-');
      await scope.sdk(ENCRYPTED).trigger(name, 'sealed', { secret: 'cached plans' });

      const client = scope.pusher();
      await connected(client);
      const channel = client.subscribe(name);
      // Bound before subscription_succeeded: the cached event follows it at once.
      assert.deepEqual(await waitFor(channel, 'sealed'), { secret: 'cached plans' });
    });
  });
});
