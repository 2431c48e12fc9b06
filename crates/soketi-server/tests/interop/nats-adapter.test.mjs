// The fleet suite (fleet-suite.mjs) over NATS (SOKETI_ADAPTER_DRIVER=nats) with a nats-server
// of its own: redis-adapter.test.mjs run with SOKETI_TEST_FLEET_BUS=nats, which leaves out what
// is Redis's own (a Redis restart, the Redis cache driver).

process.env.SOKETI_TEST_FLEET_BUS = 'nats';
await import('./redis-adapter.test.mjs');
