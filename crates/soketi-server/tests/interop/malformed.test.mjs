// Malformed WebSocket input: the server answers with an error frame and keeps both the
// offending connection and everyone else's working.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parseData, uniqueChannel, useServer } from './harness.mjs';

const isErrorReply = (f) => f.event === 'pusher:error' || f.event === 'pusher:subscription_error';

const cases = [
  ['a text frame that is not JSON', (c) => c.send('this is {not json')],
  ['a JSON array', (c) => c.send('[1, 2, 3]')],
  ['an object without event', (c) => c.send({ data: { channel: 'x' } })],
  ['a subscribe without data', (c) => c.send({ event: 'pusher:subscribe' })],
  ['a subscribe without channel', (c) => c.send({ event: 'pusher:subscribe', data: {} })],
  ['a binary frame', (c) => c.sendBinary(Buffer.from([0x00, 0xff, 0x10, 0x7b]))],
  ['a channel name with a space', (c) => c.send({ event: 'pusher:subscribe', data: { channel: 'bad name' } })],
  ['a channel name over 200 characters', (c) => c.send({ event: 'pusher:subscribe', data: { channel: 'x'.repeat(201) } })],
];

describe('malformed input', () => {
  const scope = useServer();

  for (const [what, sendBadInput] of cases) {
    it(`answers ${what} with an error and stays healthy`, async () => {
      const bystanderChannel = uniqueChannel();
      const bystander = await scope.rawSubscribed(bystanderChannel);
      const client = await scope.rawConnected();

      sendBadInput(client);
      const reply = await client.next(isErrorReply);
      const data = parseData(reply);
      assert.equal(typeof data, 'object', `error data: ${JSON.stringify(reply)}`);

      // The offending connection still works: it is answered and can subscribe.
      await client.ping();
      await client.subscribeOk(uniqueChannel());
      assert.ok(client.isOpen);

      // Other connections are unaffected.
      await bystander.ping();
      await scope.sdk().trigger(bystanderChannel, 'still-here', {});
      await bystander.next('still-here');
    });
  }
});
