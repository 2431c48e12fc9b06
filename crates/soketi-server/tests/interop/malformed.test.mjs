// Malformed WebSocket input: the server answers with an error frame of an exact kind and keeps
// both the offending connection and everyone else's working.
//
// A frame the server cannot read gets `pusher:error` with `code: null`: Pusher's codes ask the
// client to act (4000–4099 not to reconnect, 4100–4199 to back off, 4200–4299 to reconnect),
// and none of that applies to one bad frame, so the connection is never closed for it. A
// subscription the server can read but refuses gets `pusher:subscription_error` with the status
// soketi uses for a bad channel name, 4009.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parseData, uniqueChannel, useServer } from './harness.mjs';

const isErrorReply = (f) => f.event === 'pusher:error' || f.event === 'pusher:subscription_error';

/** A `pusher:error` without a code, whose message says the frame could not be read. */
const unreadable = (detail) => ({ event: 'pusher:error', code: null, message: new RegExp(`^Invalid message: .*${detail}`) });

/** A `pusher:subscription_error` for `channel`, of `type`, with status 4009. */
const refusedChannel = (type) => ({ event: 'pusher:subscription_error', type, status: 4009 });

const cases = [
  ['a text frame that is not JSON', (c) => c.send('this is {not json'), unreadable('malformed message')],
  ['a JSON array', (c) => c.send('[1, 2, 3]'), unreadable('malformed message')],
  ['an object without event', (c) => c.send({ data: { channel: 'x' } }), unreadable('missing field `event`')],
  ['a subscribe without data', (c) => c.send({ event: 'pusher:subscribe' }), unreadable('missing data')],
  ['a subscribe without channel', (c) => c.send({ event: 'pusher:subscribe', data: {} }), unreadable('missing field `channel`')],
  ['a binary frame', (c) => c.sendBinary(Buffer.from([0x00, 0xff, 0x10, 0x7b])), unreadable('Binary frames are not supported')],
  [
    'a channel name with a space',
    (c) => c.send({ event: 'pusher:subscribe', data: { channel: 'bad name' } }),
    { ...refusedChannel('InvalidChannel'), channel: 'bad name' },
  ],
  [
    'a channel name over 200 characters',
    (c) => c.send({ event: 'pusher:subscribe', data: { channel: 'x'.repeat(201) } }),
    { ...refusedChannel('LimitReached'), channel: 'x'.repeat(201) },
  ],
];

describe('malformed input', () => {
  const scope = useServer();

  for (const [what, sendBadInput, expected] of cases) {
    it(`answers ${what} with ${expected.event} ${expected.code === undefined ? expected.status : `code ${expected.code}`} and stays healthy`, async () => {
      const bystanderChannel = uniqueChannel();
      const bystander = await scope.rawSubscribed(bystanderChannel);
      const client = await scope.rawConnected();

      sendBadInput(client);
      const reply = await client.next(isErrorReply);
      const data = parseData(reply);
      const where = `reply: ${JSON.stringify(reply)}`;
      assert.equal(reply.event, expected.event, where);
      if (expected.event === 'pusher:error') {
        assert.deepEqual(Object.keys(data).sort(), ['code', 'message'], where);
        assert.equal(data.code, expected.code, `the error code; ${where}`);
        assert.match(data.message, expected.message, where);
      } else {
        assert.equal(reply.channel, expected.channel, where);
        assert.equal(data.type, expected.type, where);
        assert.equal(data.status, expected.status, `the subscription error's status; ${where}`);
        assert.equal(typeof data.error, 'string', where);
      }

      // The offending connection still works: it is answered and can subscribe, and it was
      // never closed (a close frame sent with the error would come before the pong).
      await client.ping();
      await client.subscribeOk(uniqueChannel());
      assert.equal(client.closeCode, null, `no close code: ${client.describeHistory()}`);
      assert.ok(client.isOpen);
      assert.equal(client.history.filter(isErrorReply).length, 1, `one error reply: ${client.describeHistory()}`);

      // Other connections are unaffected.
      await bystander.ping();
      await scope.sdk().trigger(bystanderChannel, 'still-here', {});
      await bystander.next('still-here');
      assert.equal(bystander.closeCode, null, bystander.describeHistory());
    });
  }
});
