// Sends malformed input to a manager's mesh port, `count` connections of each
// kind, and reports how the manager ended each. Run inside a host of a test
// cluster: node mesh-fuzz.js ADDR:PORT PEER_NAME SECRET_FILE COUNT
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { clientHandshake } from '../../manager/mesh/handshake.js';
import { FrameKind, frameHeader } from '../../manager/mesh/frame.js';

const [target, peer, secretFile, countArg] = process.argv.slice(2);
const [host, portText] = target.split(':');
const secret = readFileSync(secretFile);
const count = Number(countArg);

type Outcome = 'closed-by-server' | 'left-open';

/** Connects, runs `attack`, and waits (up to 3 s) for the server to close the connection. */
function attempt(attack: (s: net.Socket) => Promise<void>): Promise<Outcome> {
  return new Promise((resolve) => {
    const s = net.connect(Number(portText), host);
    const timer = setTimeout(() => { s.destroy(); resolve('left-open'); }, 3000);
    s.on('error', () => {});
    s.once('close', () => { clearTimeout(timer); resolve('closed-by-server'); });
    s.once('connect', () => attack(s).catch(() => {}));
  });
}

async function authenticated(s: net.Socket): Promise<void> {
  await clientHandshake(s, 'fuzzer', peer, secret, 2000);
  s.resume();
}

const kinds: Record<string, (s: net.Socket) => Promise<void>> = {
  garbage: async (s) => { s.write(randomBytes(64)); },
  'wrong-secret': async (s) => {
    s.write(Buffer.concat([Buffer.from('PJM1'), Buffer.from([6]), Buffer.from('fuzzer'), randomBytes(32)]));
    s.once('data', () => s.write(randomBytes(32))); // an answer to the challenge made without the secret
  },
  oversized: async (s) => { await authenticated(s); const h = frameHeader(FrameKind.Request, 1, 0); h.writeUInt32BE(0xffffffff, 0); s.write(h); },
  'unknown-kind': async (s) => { await authenticated(s); s.write(Buffer.concat([frameHeader(0x99 as FrameKind, 1, 3), Buffer.from('abc')])); },
  'bad-message': async (s) => { await authenticated(s); s.write(Buffer.concat([frameHeader(FrameKind.Request, 1, 1), Buffer.from([0xc1])])); },
  truncated: async (s) => { await authenticated(s); s.end(Buffer.concat([frameHeader(FrameKind.Request, 1, 100), Buffer.alloc(10)])); },
};

const report: Record<string, Record<Outcome, number>> = {};
for (const [kind, attack] of Object.entries(kinds)) {
  report[kind] = { 'closed-by-server': 0, 'left-open': 0 };
  for (let done = 0; done < count; ) {
    const batch = Math.min(25, count - done);
    const outcomes = await Promise.all(Array.from({ length: batch }, () => attempt(attack)));
    for (const o of outcomes) report[kind][o]++;
    done += batch;
  }
}
process.stdout.write(JSON.stringify(report) + '\n');
