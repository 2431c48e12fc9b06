// The fleet suite of the Redis adapter (redis-adapter.test.mjs), rerun over NATS
// (SOKETI_ADAPTER_DRIVER=nats) with a nats-server of its own: both adapters share the
// HorizontalAdapter, so every semantic must hold over both buses.

process.env.SOKETI_TEST_FLEET_BUS = 'nats';
await import('./redis-adapter.test.mjs');
