// The mesh over real loopback sockets: binary RPCs, streamed uploads under
// back-pressure, authentication, deadlines that name the host.
import net from 'node:net';
import t from 'tap';
import { STREAM_WINDOW } from '../../manager/mesh/peer-connection.js';
import { waitFor } from '../helpers/cluster.js';
import { meshPair } from '../helpers/mesh-pair.js';

t.test('an RPC carries binary payloads both ways', async (t) => {
  const { a, b } = await meshPair(t);
  b.handle('echo', (args: { data: Buffer }, ctx) => ({ data: args.data, from: ctx.from, len: args.data.length }));
  const data = Buffer.from(Array.from({ length: 70000 }, (_, i) => i % 251));
  const r = (await a.call('b', 'echo', { data })) as { data: Buffer; from: string; len: number };
  t.ok(Buffer.isBuffer(r.data), 'a Buffer comes back as a Buffer');
  t.ok(r.data.equals(data), 'same bytes');
  t.equal(r.from, 'a', 'the handler sees the authenticated caller');
});

t.test('system errors keep their errno code, others are PJ_ERR_REMOTE; unknown methods say so', async (t) => {
  const { a, b } = await meshPair(t);
  b.handle('fail', () => { const e = new Error('no such file') as NodeJS.ErrnoException; e.code = 'ENOENT'; throw e; });
  await t.rejects(a.call('b', 'fail', {}), { code: 'ENOENT', message: 'no such file' });
  b.handle('odd', () => { throw Object.assign(new Error('strange'), { code: 'SOMETHING_ELSE' }); });
  await t.rejects(a.call('b', 'odd', {}), { code: 'PJ_ERR_REMOTE', message: 'SOMETHING_ELSE: strange' });
  await t.rejects(a.call('b', 'nope', {}), { code: 'PJ_ERR_NO_SUCH_METHOD', message: "host has no mesh method 'nope'" });
});

t.test('an upload streams in order and the sender waits for credit from a slow reader', async (t) => {
  const { a, b } = await meshPair(t);
  let received = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  b.handle('slow-sink', async (_args, ctx) => {
    const hash = (await import('node:crypto')).createHash('sha256');
    let first = true;
    for await (const chunk of ctx.stream!) {
      if (first) { first = false; await gate; }
      received += chunk.length;
      hash.update(chunk);
    }
    return { bytes: received, sha: hash.digest('hex') };
  });
  const chunks = Array.from({ length: 64 }, (_, i) => Buffer.alloc(512 * 1024, i));
  let produced = 0;
  async function* source() { for (const c of chunks) { produced += c.length; yield c; } }
  b.handle('ping', () => 'pong');
  const upload = a.upload('b', 'slow-sink', null, source(), 5000);
  await waitFor(async () => produced >= STREAM_WINDOW, 10_000, 10);
  // Round trips on the same connection: any credit b would grant without reading has reached a by then.
  for (let i = 0; i < 3; i++) t.equal(await a.call('b', 'ping', {}), 'pong');
  t.ok(produced <= STREAM_WINDOW + 2 * 512 * 1024, `sender stopped at the window while the reader waits (${produced} bytes produced)`);
  release();
  const r = (await upload) as { bytes: number; sha: string };
  const expect = (await import('node:crypto')).createHash('sha256');
  chunks.forEach((c) => expect.update(c));
  t.equal(r.bytes, 32 * 1024 * 1024);
  t.equal(r.sha, expect.digest('hex'), 'bytes arrive complete and in order');
});

t.test('a peer with the wrong secret is rejected', async (t) => {
  const { a, b } = await meshPair(t, { clientSecret: Buffer.from('ffffffffffffffffffffffffffffffff') });
  b.handle('echo', () => 'never');
  await t.rejects(a.call('b', 'echo', {}), { code: 'PJ_ERR_AUTH_FAILED', message: 'host b failed authentication: it does not hold the cluster secret' });
});

t.test('a host that accepts but never answers fails with PJ_ERR_TIMEOUT naming it, within the deadline', async (t) => {
  const { a, addresses } = await meshPair(t);
  const mute = net.createServer((s) => s.on('error', () => {}));
  await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
  t.teardown(() => mute.close());
  addresses.set('mute', { address: '127.0.0.1', port: (mute.address() as net.AddressInfo).port });
  const t0 = Date.now();
  await t.rejects(a.call('mute', 'echo', {}, 800), { code: 'PJ_ERR_TIMEOUT', host: 'mute', message: /host mute/ });
  const took = Date.now() - t0;
  t.ok(took >= 700 && took < 5000, `failed at the deadline, not before it and without hanging (${took} ms)`);
});

t.test('a handler that never returns times out and the link keeps serving', async (t) => {
  const { a, b } = await meshPair(t);
  b.handle('hang', () => new Promise(() => {}));
  b.handle('echo', (x: unknown) => x);
  const t0 = Date.now();
  await t.rejects(a.call('b', 'hang', {}, 500), { code: 'PJ_ERR_TIMEOUT', message: "rpc 'hang' to host b timed out after 500 ms" });
  t.ok(Date.now() - t0 < 900);
  t.same(await a.call('b', 'echo', { n: 1 }), { n: 1 });
});

t.test('a host nobody listens on is unreachable, named', async (t) => {
  const { a, addresses } = await meshPair(t);
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  addresses.set('gone', { address: '127.0.0.1', port });
  await t.rejects(a.call('gone', 'echo', {}), { code: 'PJ_ERR_HOST_UNREACHABLE', host: 'gone', message: /host gone .* unreachable: ECONNREFUSED/ });
});
