// Presence channels: the member list, member_added/member_removed, users with several
// connections, and the member limits.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  parseData,
  subscribe,
  subscribeData,
  subscriptionCount,
  uniqueChannel,
  until,
  useServer,
  waitFor,
} from './harness.mjs';

const alice = { user_id: 'alice', user_info: { name: 'Alice' } };
const bob = { user_id: 'bob', user_info: { name: 'Bob' } };
const carol = { user_id: 'carol', user_info: { name: 'Carol' } };

/** The `presence` object of a raw subscription_succeeded frame, whose data is a JSON string. */
function presenceOf(frame) {
  assert.equal(frame.event, 'pusher_internal:subscription_succeeded', JSON.stringify(frame));
  assert.equal(typeof frame.data, 'string', 'Pusher sends this event data as a JSON string');
  return JSON.parse(frame.data).presence;
}

/** The next member_added or member_removed frame for `channel`, as `{ event, user_id, user_info }`. */
async function nextMemberChange(client, channel) {
  const frame = await client.next(
    (f) =>
      f.channel === channel &&
      (f.event === 'pusher_internal:member_added' || f.event === 'pusher_internal:member_removed'),
  );
  return { event: frame.event, ...parseData(frame) };
}

describe('presence', () => {
  const scope = useServer();

  it('lists the members in subscription_succeeded as ids, hash and count', async () => {
    const channel = uniqueChannel('presence-');
    await scope.rawSubscribed(channel, alice);
    const client = await scope.rawSubscribed(channel, bob);
    const presence = presenceOf(client.succeeded);
    assert.deepEqual([...presence.ids].sort(), ['alice', 'bob']);
    assert.deepEqual(presence.hash, { alice: alice.user_info, bob: bob.user_info });
    assert.equal(presence.count, 2);
  });

  for (const prefix of ['presence-', 'presence-cache-']) {
    it(`does not announce a ${prefix} member to its own connection`, async () => {
      const channel = uniqueChannel(prefix);
      const client = await scope.rawSubscribed(channel, alice);
      // The pong is answered after the subscription was handled, so a member_added sent to the
      // joiner itself would be queued before it.
      await client.ping();
      const echoes = client.history.filter((f) => f.event === 'pusher_internal:member_added');
      assert.deepEqual(echoes, [], client.describeHistory());
    });
  }

  it('gives pusher-js the right members, me and count', async () => {
    const name = uniqueChannel('presence-');
    await scope.rawSubscribed(name, alice);
    const client = await scope.connectedPusher({ presence: bob });
    const { channel } = await subscribe(client, name);
    assert.equal(channel.members.count, 2);
    assert.deepEqual(channel.members.me, { id: 'bob', info: bob.user_info });
    assert.deepEqual(channel.members.get('alice'), { id: 'alice', info: alice.user_info });
  });

  it('fires pusher:member_added and pusher:member_removed on the other members', async () => {
    const name = uniqueChannel('presence-');
    const watcher = await scope.connectedPusher({ presence: alice });
    const { channel } = await subscribe(watcher, name);

    const added = waitFor(channel, 'pusher:member_added');
    const joiner = await scope.connectedPusher({ presence: bob });
    await subscribe(joiner, name);
    assert.deepEqual(await added, { id: 'bob', info: bob.user_info });
    assert.equal(channel.members.count, 2);

    const removed = waitFor(channel, 'pusher:member_removed');
    joiner.disconnect();
    assert.deepEqual(await removed, { id: 'bob', info: bob.user_info });
    assert.equal(channel.members.count, 1);
  });

  it('counts a user with two connections once', async () => {
    const channel = uniqueChannel('presence-');
    const watcher = await scope.rawSubscribed(channel, carol);
    const first = await scope.rawSubscribed(channel, alice);
    assert.deepEqual(await nextMemberChange(watcher, channel), {
      event: 'pusher_internal:member_added',
      user_id: 'alice',
      user_info: alice.user_info,
    });

    const second = await scope.rawSubscribed(channel, alice);
    const presence = presenceOf(second.succeeded);
    assert.equal(presence.count, 2, 'alice and carol, alice counted once');
    assert.deepEqual([...presence.ids].sort(), ['alice', 'carol']);

    // Bob joining and leaving is the sentinel: had the second alice connection been announced,
    // or the first one's departure, that change would have reached the watcher before bob's.
    const sentinel = await scope.rawSubscribed(channel, bob);
    assert.equal((await nextMemberChange(watcher, channel)).user_id, 'bob', 'no member_added for a second connection');

    first.close();
    // Waiting for the server to count the departure keeps it ordered before the sentinel's.
    await until(async () => (await subscriptionCount(scope.server, channel)) === 3, {
      what: 'the first alice connection to leave',
    });
    sentinel.close();
    const afterFirstLeft = await nextMemberChange(watcher, channel);
    assert.deepEqual(
      { event: afterFirstLeft.event, user_id: afterFirstLeft.user_id },
      { event: 'pusher_internal:member_removed', user_id: 'bob' },
      'no member_removed while alice still has a connection',
    );

    second.close();
    const lastLeft = await nextMemberChange(watcher, channel);
    assert.deepEqual(
      { event: lastLeft.event, user_id: lastLeft.user_id },
      { event: 'pusher_internal:member_removed', user_id: 'alice' },
    );
  });

  it('returns numeric user ids as strings', async () => {
    const channel = uniqueChannel('presence-');
    const watcher = await scope.rawSubscribed(channel, carol);
    const numeric = { user_id: 42, user_info: { name: 'Answer' } };
    const member = await scope.rawSubscribed(channel, numeric);

    const presence = presenceOf(member.succeeded);
    assert.ok(presence.ids.includes('42'), `ids ${JSON.stringify(presence.ids)}`);
    assert.deepEqual(presence.hash['42'], numeric.user_info);
    const added = await nextMemberChange(watcher, channel);
    assert.equal(added.user_id, '42');
  });

  it('refuses a member whose user_info is over 2 KB with status 4301', async () => {
    const channel = uniqueChannel('presence-');
    const client = await scope.rawConnected();
    const big = { user_id: 'big', user_info: { blob: 'x'.repeat(3 * 1024) } };
    const frame = await client.subscribe(channel, subscribeData(scope.server, client.socketId, channel, big));
    assert.equal(frame.event, 'pusher:subscription_error', client.describeHistory());
    assert.equal(parseData(frame).status, 4301);
    await client.ping();
  });
});

describe('presence with at most 2 members', () => {
  const scope = useServer({ SOKETI_PRESENCE_MAX_MEMBERS: '2' });

  it('refuses a third user with LimitReached 4100 and still admits another connection of a member', async () => {
    const channel = uniqueChannel('presence-');
    await scope.rawSubscribed(channel, alice);
    await scope.rawSubscribed(channel, bob);

    const third = await scope.rawConnected();
    const frame = await third.subscribe(channel, subscribeData(scope.server, third.socketId, channel, carol));
    assert.equal(frame.event, 'pusher:subscription_error', third.describeHistory());
    const data = parseData(frame);
    assert.equal(data.status, 4100);
    assert.equal(data.type, 'LimitReached');
    await third.ping();

    const again = await scope.rawSubscribed(channel, alice);
    assert.equal(presenceOf(again.succeeded).count, 2);
  });

  it('fires pusher:subscription_error with status 4100 in pusher-js', async () => {
    const name = uniqueChannel('presence-');
    await scope.rawSubscribed(name, alice);
    await scope.rawSubscribed(name, bob);
    const client = await scope.connectedPusher({ presence: carol });
    const err = await subscribe(client, name).then(
      () => assert.fail('the subscription should fail'),
      (e) => e,
    );
    assert.equal(err.data.status, 4100);
  });
});
