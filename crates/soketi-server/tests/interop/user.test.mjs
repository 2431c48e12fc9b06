// User sign-in (`pusher:signin`), messages to a user (`sendToUser`) and terminating a user's
// connections through the HTTP API.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parseData, pusherServer, record, until, useServer, waitFor, withTimeout } from './harness.mjs';

/**
 * A pusher-js client signed in as `id`, once the server has confirmed the subscription to its
 * `#server-to-user-<id>` channel, which pusher-js makes after `pusher:signin_success`.
 */
async function signedInPusher(scope, id) {
  const client = await scope.connectedPusher({ user: { id, user_info: { name: id } } });
  client.signin();
  await withTimeout(client.user.signinDonePromise, 5_000, `sign-in of ${id}`);
  assert.equal(client.user.user_data?.id, id, `${id} is signed in`);
  await until(() => client.user.serverToUserChannel?.subscribed, {
    what: `the #server-to-user-${id} subscription to succeed`,
  });
  return client;
}

/** A raw client signed in as `id`. */
async function signedInRaw(scope, id) {
  const client = await scope.rawConnected();
  const frame = await client.signin(scope.sdk(), { id });
  assert.equal(frame.event, 'pusher:signin_success', client.describeHistory());
  return client;
}

describe('user sign-in', () => {
  const scope = useServer();

  it('signs pusher-js in', async () => {
    const client = await signedInPusher(scope, 'alice');
    assert.equal(client.connection.state, 'connected');
  });

  it('answers a raw pusher:signin with pusher:signin_success carrying the user data', async () => {
    const client = await scope.rawConnected();
    const userData = { id: 'alice', user_info: { name: 'Alice' } };
    const frame = await client.signin(scope.sdk(), userData);
    assert.equal(frame.event, 'pusher:signin_success', client.describeHistory());
    assert.equal(parseData(frame).user_data, JSON.stringify(userData));
    await client.ping();
  });

  it('delivers sendToUser to every connection of that user and to no one else', async () => {
    const first = await signedInPusher(scope, 'alice');
    const second = await signedInPusher(scope, 'alice');
    const other = await signedInPusher(scope, 'bob');
    const otherSaw = record(other.user, 'notice');

    const toFirst = waitFor(first.user, 'notice');
    const toSecond = waitFor(second.user, 'notice');
    const res = await scope.sdk().sendToUser('alice', 'notice', { for: 'alice' });
    assert.equal(res.status, 200);
    assert.deepEqual(await toFirst, { for: 'alice' });
    assert.deepEqual(await toSecond, { for: 'alice' });

    // Sent after alice's message, bob's own message is the sentinel: alice's would have come first.
    const toOther = waitFor(other.user, 'notice');
    await scope.sdk().sendToUser('bob', 'notice', { for: 'bob' });
    assert.deepEqual(await toOther, { for: 'bob' });
    otherSaw.stop();
    assert.deepEqual(otherSaw, [{ for: 'bob' }]);
  });

  it("closes every connection of a user with 4009 on terminateUserConnections, and only theirs", async () => {
    const first = await signedInRaw(scope, 'carol');
    const second = await signedInRaw(scope, 'carol');
    const bystander = await signedInRaw(scope, 'dave');

    const res = await scope.sdk().terminateUserConnections('carol');
    assert.equal(res.status, 200);
    assert.equal((await first.closed()).code, 4009);
    assert.equal((await second.closed()).code, 4009);
    await bystander.ping();
    assert.ok(bystander.isOpen);
  });

  it('refuses a bad sign-in signature with 4009 and closes the connection with 4009', async () => {
    const client = await scope.rawConnected();
    const frame = await client.signin(pusherServer(scope.server, { secret: 'not-the-secret' }), { id: 'mallory' });
    assert.equal(frame.event, 'pusher:error', client.describeHistory());
    assert.equal(parseData(frame).code, 4009);
    assert.equal((await client.closed()).code, 4009);
  });
});
