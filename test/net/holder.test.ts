// The connection holder (native/holder/pj-holder.c) on its own, driven as its
// manager drives it (net-layer/holder.ts, outside.ts), with real sockets on
// loopback: a connection adopted, reached by a framed tunnel with a one-time
// ticket, paused for a detach, handed out directly, closed; a second manager
// taking the holder over; bad input; the holder ending its connections on
// SHUTDOWN only; a dead holder replaced.
import t from 'tap';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLog } from '../../common/log.js';
import { loadBinding as native } from '../../native/loader.js';
import { HolderLink } from '../../net-layer/holder.js';
import { OutsideConnections } from '../../net-layer/outside.js';
import { waitFor } from '../helpers/cluster.js';

const dir = mkdtempSync(join(tmpdir(), 'pj-holder-'));
const socketPath = join(dir, 'holder.sock');
const logFile = join(dir, 'holder.log');
const link = () => new HolderLink({ socketPath, address: '127.0.0.1', logFile, log: silentLog });
const first = link();
const outside = new OutsideConnections(first, '127.0.0.1');
await first.open();
const holderPid = Number(/\(pid (\d+)\)/.exec(readFileSync(logFile, 'utf8'))![1]);
t.teardown(() => {
  for (const [, pid] of readFileSync(logFile, 'utf8').matchAll(/\(pid (\d+)\)/g)) try { process.kill(Number(pid), 'SIGKILL'); } catch { /* ended */ }
  rmSync(dir, { recursive: true, force: true });
});

/** A server on loopback and a connection to it: the server's end (the "outside") and the client's descriptor. */
async function connectedPair(): Promise<{ far: net.Socket; fd: number; close: () => void }> {
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const far = new Promise<net.Socket>((r) => server.once('connection', r));
  const fd = await native().tcpConnect('127.0.0.1', (server.address() as net.AddressInfo).port, 2000);
  if (typeof fd !== 'number') throw new Error('connect failed');
  return { far: await far, fd, close: () => server.close() };
}

/** Reads a tunnel's frames: data and whether the EOF frame came. */
function deframed(sock: net.Socket): { data: () => Buffer; eof: () => boolean; ended: Promise<void> } {
  let raw = Buffer.alloc(0);
  sock.on('data', (d) => (raw = Buffer.concat([raw, d])));
  const parse = () => {
    const parts: Buffer[] = [];
    let eof = false;
    for (let i = 0; i + 4 <= raw.length;) {
      const n = raw.readUInt32LE(i);
      if (n === 0) eof = true;
      parts.push(raw.subarray(i + 4, i + 4 + n));
      i += 4 + n;
    }
    return { data: Buffer.concat(parts), eof };
  };
  return { data: () => parse().data, eof: () => parse().eof, ended: new Promise((r) => sock.once('end', () => r())) };
}
const framed = (b: Buffer) => { const h = Buffer.alloc(4); h.writeUInt32LE(b.length); return Buffer.concat([h, b]); };

async function tunnel(key: bigint): Promise<net.Socket> {
  const ticket = await outside.ticket(key);
  const sock = net.connect({ host: ticket.address, port: ticket.port, allowHalfOpen: true });
  await new Promise((r) => sock.once('connect', r));
  sock.write(Buffer.from(ticket.token, 'hex'));
  return sock;
}

t.test('a tunnel carries bytes both ways, framed, and a pause flushes and half-closes it; the bytes after it wait in the socket', async (t) => {
  const pair = await connectedPair();
  const key = await outside.adopt(pair.fd, 'j1', 'test:1');
  const tun = await tunnel(key);
  const seen = deframed(tun);
  const down = randomBytes(300_000);
  pair.far.write(down);
  await waitFor(async () => seen.data().length === down.length, 10_000, 20);
  t.ok(seen.data().equals(down), 'the outside\'s bytes came through the tunnel whole, framed');
  const up = randomBytes(200_000);
  let got = Buffer.alloc(0);
  pair.far.on('data', (d) => (got = Buffer.concat([got, d])));
  tun.write(framed(up));
  await waitFor(async () => got.length === up.length, 10_000, 20);
  t.ok(got.equals(up), 'the job\'s frames reached the outside as bytes');

  const paused = outside.pause(key);
  await seen.ended;
  t.pass('the holder half-closed the tunnel');
  pair.far.write('after the pause');
  tun.end(framed(Buffer.from('last words'))); // the init closes its end once it has read the tunnel to its end
  await paused;
  await waitFor(async () => got.toString().endsWith('last words'), 5000, 20);
  t.pass('what the job sent before closing still reached the outside, and the pause was answered');

  const again = seen.data().length;
  const tun2 = await tunnel(key);
  const seen2 = deframed(tun2);
  await waitFor(async () => seen2.data().toString() === 'after the pause', 5000, 20);
  t.equal(again, down.length, 'nothing was read from the outside after the pause');
  t.pass('a new tunnel (the job after its move) gets what came meanwhile');
  pair.far.end();
  await waitFor(async () => seen2.eof(), 5000, 20);
  t.pass('the outside\'s EOF comes as an EOF frame');
  tun2.destroy();
  outside.close(key);
  pair.close();
});

t.test('a duplicate for a job on this host; a ticket is good once; unknown keys are errors', async (t) => {
  const pair = await connectedPair();
  const key = await outside.adopt(pair.fd, 'j2', 'test:2');
  const fd = await outside.direct(key);
  const mine = new net.Socket({ fd, readable: true, writable: true });
  mine.write('direct');
  const got = await new Promise<string>((r) => pair.far.once('data', (d) => r(String(d))));
  t.equal(got, 'direct', 'the duplicate is the connection itself');
  mine.destroy();

  const ticket = await outside.ticket(key);
  const use = async () => {
    const s = net.connect({ host: ticket.address, port: ticket.port });
    await new Promise((r) => s.once('connect', r));
    s.write(Buffer.from(ticket.token, 'hex'));
    return s;
  };
  const one = await use();
  const two = await use();
  await new Promise((r) => two.once('close', r));
  t.pass('a second tunnel with the same ticket is closed');
  one.destroy();
  await t.rejects(outside.ticket(12345n), /no connection 12345 here/, 'a ticket for an unknown key is refused');
  await t.rejects(outside.direct(12345n), /no connection 12345 here/);
  const wrong = net.connect({ host: '127.0.0.1', port: first.port });
  wrong.write(randomBytes(16));
  await new Promise((r) => wrong.once('close', r));
  t.pass('a tunnel with a token nobody was given is closed');
  outside.close(key, true);
  await new Promise((r) => pair.far.once('error', r).once('close', r));
  t.pass('a close with reset resets the outside');
  pair.close();
});

t.test('a malformed request is logged and dropped; the holder serves on', async (t) => {
  // A connection of its own (the holder serves one manager at a time: the first is put aside, and comes back below).
  const fd = native().seqpacketConnect(socketPath, () => {}, {})!;
  native().seqpacketSend(fd, randomBytes(7), [], {});
  await waitFor(async () => /malformed message from the manager \(7 bytes\)/.test(readFileSync(logFile, 'utf8')), 5000, 20);
  t.same(await outside.stats(), { connections: 0, tunnels: 0 }, 'it still answers');
});

t.test("a published port's listening socket is kept: a client connects while no manager listens, and is accepted by the next; unpublished, it is closed", async (t) => {
  const first = net.createServer();
  await new Promise<void>((r) => first.listen(0, '127.0.0.1', r));
  const port = (first.address() as net.AddressInfo).port;
  await outside.keepListener(native().dupFd((first as unknown as { _handle: { fd: number } })._handle.fd, {})!, port, 'j5');
  await new Promise((r) => first.close(r)); // its manager is gone
  const client = net.connect(port, '127.0.0.1');
  await new Promise((r) => client.once('connect', r));
  client.write('waited');
  t.pass('a client connects while nobody accepts');
  const fd = await outside.keptListener(port);
  t.type(fd, 'number', 'the next manager gets the listening socket back');
  const next = net.createServer();
  const accepted = new Promise<net.Socket>((r) => next.once('connection', r));
  next.listen({ fd });
  const sock = await accepted;
  const got = await new Promise<string>((r) => sock.once('data', (d) => r(d.toString())));
  t.equal(got, 'waited', 'and accepts the waiting client, bytes and all');
  sock.destroy();
  client.destroy();
  outside.unpublish(port);
  await new Promise((r) => next.close(r));
  t.equal(await outside.keptListener(port), undefined, 'unpublished: the holder keeps nothing for the port');
  const refused = await new Promise<string>((r) => net.connect(port, '127.0.0.1').once('error', (e: NodeJS.ErrnoException) => r(e.code ?? '')).once('connect', () => r('connected')));
  t.equal(refused, 'ECONNREFUSED', 'and the port is closed');
});

t.test('a second manager takes the holder over with its connections; only SHUTDOWN ends them', async (t) => {
  const pair = await connectedPair();
  const key = await outside.adopt(pair.fd, 'j3', 'test:3');
  const tun = await tunnel(key);
  const seen = deframed(tun);
  const next = link();
  const nextOutside = new OutsideConnections(next, '127.0.0.1');
  await next.open();
  t.same(await nextOutside.stats(), { connections: 1, tunnels: 1 }, 'the new manager sees the connection and its tunnel');
  pair.far.write('still here');
  await waitFor(async () => seen.data().toString() === 'still here', 5000, 20);
  t.pass('the tunnel carries on while the manager changes');
  nextOutside.closeAll();
  await seen.ended;
  await waitFor(async () => { try { process.kill(holderPid, 0); return false; } catch { return true; } }, 5000, 20);
  t.pass('SHUTDOWN ends the tunnel and the holder');
  pair.far.destroy();
  pair.close();
});

t.test('a holder that died is started again by the next request; what it held is gone, and said so', async (t) => {
  const again = link();
  const againOutside = new OutsideConnections(again, '127.0.0.1');
  const pair = await connectedPair();
  const key = await againOutside.adopt(pair.fd, 'j4', 'test:4'); // a new holder: the last one ended above
  const pid = Number([...readFileSync(logFile, 'utf8').matchAll(/\(pid (\d+)\)/g)].at(-1)![1]);
  t.not(pid, holderPid, 'a new holder was started');
  process.kill(pid, 'SIGKILL');
  await new Promise((r) => pair.far.once('end', r).resume());
  t.pass('the connection it held ended with it');
  // Gone whole (reaped): a request sent while it was still closing its descriptors would reach it and fail with it.
  await waitFor(async () => { try { process.kill(pid, 0); return false; } catch { return true; } }, 5000, 10);
  await t.rejects(againOutside.ticket(key), /no connection \d+ here/, 'its key is unknown to the next holder');
  t.same(await againOutside.stats(), { connections: 0, tunnels: 0 }, 'which serves on');
  againOutside.closeAll();
  pair.close();
});
