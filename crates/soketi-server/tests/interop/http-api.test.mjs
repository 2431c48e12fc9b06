// The HTTP API through the official SDK: publishing (single, multi-channel, batch, with
// exclusion and `info`) and the channel queries.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parseData, sdkFailure, sdkJson, uniqueChannel, useServer } from './harness.mjs';

const alice = { user_id: 'alice', user_info: { name: 'Alice' } };
const bob = { user_id: 'bob', user_info: { name: 'Bob' } };

/** The next frame that is an event for the application, not a protocol frame. */
function nextAppEvent(client) {
  return client.next((f) => typeof f.event === 'string' && !f.event.startsWith('pusher'));
}

describe('HTTP API', () => {
  const scope = useServer();

  describe('publishing', () => {
    it('answers a trigger with 200 and {} (as Pusher does without info), and delivers the event', async () => {
      const channel = uniqueChannel();
      const client = await scope.rawSubscribed(channel);
      const { status, json } = await sdkJson(scope.sdk().trigger(channel, 'news', { n: 1 }));
      assert.equal(status, 200);
      assert.deepEqual(json, {});
      const frame = await client.next('news');
      assert.deepEqual(parseData(frame), { n: 1 });
    });

    it('delivers one trigger to several channels', async () => {
      const channels = [uniqueChannel(), uniqueChannel('private-')];
      const clients = await Promise.all(channels.map((c) => scope.rawSubscribed(c)));
      const res = await scope.sdk().trigger(channels, 'news', { n: 2 });
      assert.equal(res.status, 200);
      for (const [i, client] of clients.entries()) {
        const frame = await client.next('news');
        assert.equal(frame.channel, channels[i]);
        assert.deepEqual(parseData(frame), { n: 2 });
      }
    });

    it('does not deliver to the socket_id given as exclusion', async () => {
      const channel = uniqueChannel();
      const excluded = await scope.rawSubscribed(channel);
      const included = await scope.rawSubscribed(channel);
      const sdk = scope.sdk();
      const res = await sdk.trigger(channel, 'not-for-you', {}, { socket_id: excluded.socketId });
      assert.equal(res.status, 200);
      await included.next('not-for-you');

      // Events reach a socket in publish order, so the sentinel coming first proves the
      // excluded socket was skipped.
      await sdk.trigger(channel, 'sentinel', {});
      assert.equal((await nextAppEvent(excluded)).event, 'sentinel', excluded.describeHistory());
    });

    it('answers trigger with info by the channels subscription_count and user_count', async () => {
      const open = uniqueChannel();
      const presence = uniqueChannel('presence-');
      await scope.rawSubscribed(open);
      await scope.rawSubscribed(open);
      await scope.rawSubscribed(presence, alice);
      await scope.rawSubscribed(presence, alice);
      await scope.rawSubscribed(presence, bob);

      const { status, json } = await sdkJson(
        scope.sdk().trigger([open, presence], 'counted', {}, { info: 'subscription_count,user_count' }),
      );
      assert.equal(status, 200);
      assert.deepEqual(json.channels[open], { subscription_count: 2 }, 'no user_count outside presence');
      assert.deepEqual(json.channels[presence], { subscription_count: 3, user_count: 2 });
    });

    it('delivers a batch and answers 200', async () => {
      const first = uniqueChannel();
      const second = uniqueChannel();
      const a = await scope.rawSubscribed(first);
      const b = await scope.rawSubscribed(second);
      const res = await scope.sdk().triggerBatch([
        { channel: first, name: 'one', data: { n: 1 } },
        { channel: second, name: 'two', data: { n: 2 } },
      ]);
      assert.equal(res.status, 200);
      assert.deepEqual(parseData(await a.next('one')), { n: 1 });
      assert.deepEqual(parseData(await b.next('two')), { n: 2 });
    });

    it('answers a batch with info by one entry per event', async () => {
      const open = uniqueChannel();
      const presence = uniqueChannel('presence-');
      await scope.rawSubscribed(open);
      await scope.rawSubscribed(presence, alice);
      await scope.rawSubscribed(presence, bob);
      const info = 'subscription_count,user_count';
      const { status, json } = await sdkJson(
        scope.sdk().triggerBatch([
          { channel: open, name: 'one', data: {}, info },
          { channel: presence, name: 'two', data: {}, info },
        ]),
      );
      assert.equal(status, 200);
      assert.deepEqual(json.batch, [{ subscription_count: 1 }, { subscription_count: 2, user_count: 2 }]);
    });
  });

  describe('channel queries', () => {
    it('lists occupied channels only', async () => {
      const occupied = uniqueChannel();
      const occupiedPresence = uniqueChannel('presence-');
      const left = uniqueChannel();
      const never = uniqueChannel();
      await scope.rawSubscribed(occupied);
      await scope.rawSubscribed(occupiedPresence, alice);
      const leaver = await scope.rawSubscribed(left);
      leaver.send({ event: 'pusher:unsubscribe', data: { channel: left } });
      // The pong is sent after the unsubscribe was handled.
      await leaver.ping();

      const { status, json } = await sdkJson(scope.sdk().get({ path: '/channels' }));
      assert.equal(status, 200);
      assert.equal(typeof json.channels[occupied], 'object', JSON.stringify(json));
      assert.equal(typeof json.channels[occupiedPresence], 'object', JSON.stringify(json));
      assert.equal(json.channels[left], undefined, 'a channel everyone left is not listed');
      assert.equal(json.channels[never], undefined);
    });

    it('gives user_count for presence channels filtered by prefix', async () => {
      const presence = uniqueChannel('presence-');
      const open = uniqueChannel();
      await scope.rawSubscribed(open);
      await scope.rawSubscribed(presence, alice);
      await scope.rawSubscribed(presence, alice);
      await scope.rawSubscribed(presence, bob);

      const { json } = await sdkJson(
        scope.sdk().get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } }),
      );
      assert.equal(json.channels[presence]?.user_count, 2, JSON.stringify(json));
      assert.equal(json.channels[open], undefined, 'the prefix filter leaves out other channels');
      for (const name of Object.keys(json.channels)) assert.ok(name.startsWith('presence-'), name);
    });

    it('refuses info=user_count without a presence- prefix filter with 400', async () => {
      const { status, json } = await sdkFailure(scope.sdk().get({ path: '/channels', params: { info: 'user_count' } }));
      assert.equal(status, 400);
      assert.equal(json?.code, 400);
      assert.equal(typeof json?.error, 'string');
    });

    it('describes one presence channel with occupied, subscription_count and user_count', async () => {
      const channel = uniqueChannel('presence-');
      await scope.rawSubscribed(channel, alice);
      await scope.rawSubscribed(channel, alice);
      const { status, json } = await sdkJson(
        scope.sdk().get({ path: `/channels/${channel}`, params: { info: 'subscription_count,user_count' } }),
      );
      assert.equal(status, 200);
      assert.deepEqual(json, { occupied: true, subscription_count: 2, user_count: 1 });
    });

    it('describes one public channel without user_count', async () => {
      const channel = uniqueChannel();
      await scope.rawSubscribed(channel);
      const { json } = await sdkJson(
        scope.sdk().get({ path: `/channels/${channel}`, params: { info: 'subscription_count' } }),
      );
      assert.deepEqual(json, { occupied: true, subscription_count: 1 });
    });

    it('describes an empty channel as not occupied', async () => {
      const { status, json } = await sdkJson(
        scope.sdk().get({ path: `/channels/${uniqueChannel()}`, params: { info: 'subscription_count' } }),
      );
      assert.equal(status, 200);
      assert.equal(json.occupied, false);
      if ('subscription_count' in json) assert.equal(json.subscription_count, 0);
    });

    it('lists the users of a presence channel once each', async () => {
      const channel = uniqueChannel('presence-');
      await scope.rawSubscribed(channel, alice);
      await scope.rawSubscribed(channel, alice);
      await scope.rawSubscribed(channel, bob);
      const { status, json } = await sdkJson(scope.sdk().get({ path: `/channels/${channel}/users` }));
      assert.equal(status, 200);
      const users = [...json.users].sort((x, y) => x.id.localeCompare(y.id));
      assert.deepEqual(users, [{ id: 'alice' }, { id: 'bob' }]);
    });

    it('refuses the users of a non-presence channel with 400', async () => {
      const channel = uniqueChannel('private-');
      await scope.rawSubscribed(channel);
      const { status, json } = await sdkFailure(scope.sdk().get({ path: `/channels/${channel}/users` }));
      assert.equal(status, 400);
      assert.equal(json?.code, 400);
    });
  });
});
