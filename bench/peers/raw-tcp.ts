// The baseline of the mesh benchmark: plain TCP between the same two hosts.
//   node raw-tcp.js server ADDR PORT
//   node raw-tcp.js ping ADDR PORT COUNT SIZE      -> {"rttsMs": [...]}
//   node raw-tcp.js stream ADDR PORT BYTES CHUNK   -> {"bytes": n, "seconds": s}
// The first byte of a connection says which test it is ('p' or 's'); a stream
// then sends its length (u64) and the server answers one byte when all arrived.
import net from 'node:net';

const [mode, address, portText, a, b] = process.argv.slice(2);
const port = Number(portText);

function serve(): void {
  net.createServer((s) => {
    s.setNoDelay(true);
    let kind: string | undefined;
    let header = Buffer.alloc(0);
    let expected = -1;
    let got = 0;
    s.on('data', (d: Buffer) => {
      if (kind === undefined) { kind = String.fromCharCode(d[0]); d = d.subarray(1); }
      if (kind === 'p') return void (d.length && s.write(d));
      if (expected < 0) {
        header = Buffer.concat([header, d]);
        if (header.length < 8) return;
        expected = Number(header.readBigUInt64BE(0));
        d = header.subarray(8);
      }
      got += d.length;
      if (got >= expected) s.write(Buffer.from([1]));
    });
    s.on('error', () => {});
  }).listen(port, address, () => process.stdout.write('{"listening":true}\n'));
}

function connect(kind: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, address, () => { s.setNoDelay(true); s.write(kind); resolve(s); });
    s.once('error', reject);
  });
}

async function ping(count: number, size: number): Promise<void> {
  const s = await connect('p');
  const msg = Buffer.alloc(size, 0x5a);
  const rttsMs: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve) => {
      let got = 0;
      const on = (d: Buffer) => { got += d.length; if (got >= size) { s.off('data', on); resolve(); } };
      s.on('data', on);
      s.write(msg);
    });
    rttsMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  s.destroy();
  process.stdout.write(JSON.stringify({ rttsMs }) + '\n');
}

async function stream(bytes: number, chunkBytes: number): Promise<void> {
  const s = await connect('s');
  const chunk = Buffer.alloc(chunkBytes, 0xa5);
  const len = Buffer.alloc(8);
  len.writeBigUInt64BE(BigInt(bytes));
  const acked = new Promise<void>((r) => s.once('data', () => r()));
  const t0 = process.hrtime.bigint();
  s.write(len);
  for (let sent = 0; sent < bytes; sent += chunkBytes) {
    if (!s.write(chunk)) await new Promise((r) => s.once('drain', r));
  }
  await acked;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  s.destroy();
  process.stdout.write(JSON.stringify({ bytes, seconds }) + '\n');
}

if (mode === 'server') serve();
else if (mode === 'ping') await ping(Number(a), Number(b));
else if (mode === 'stream') await stream(Number(a), Number(b));
else throw new Error(`unknown mode ${mode}`);
