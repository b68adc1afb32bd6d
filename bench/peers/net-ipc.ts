// The net-ipc candidate for the mesh, measured the same way as ours:
//   node net-ipc.js server ADDR PORT | ping ADDR PORT COUNT SIZE | stream ADDR PORT BYTES CHUNK
// Messages use its messagepack mode so that Buffers travel as binary.
import { Client, Server } from 'net-ipc';

const [mode, address, portText, a, b] = process.argv.slice(2);
const port = Number(portText);

if (mode === 'server') {
  let got = 0;
  const server = new Server({ host: address, port, options: { noDelay: true }, messagepack: true } as never);
  server.on('message', (m: Buffer) => { got += m.length; });
  server.on('request', (req: unknown, res: (v: unknown) => Promise<void>) => res(req === 'count' ? got : req));
  await server.start();
  process.stdout.write('{"listening":true}\n');
} else {
  const client = new Client({ host: address, port, messagepack: true, options: { noDelay: true } } as never);
  await client.connect();
  if (mode === 'ping') {
    const msg = Buffer.alloc(Number(b), 0x5a);
    const rttsMs: number[] = [];
    for (let i = 0; i < Number(a); i++) {
      const t0 = process.hrtime.bigint();
      await client.request(msg, 10_000);
      rttsMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    process.stdout.write(JSON.stringify({ rttsMs }) + '\n');
  } else {
    const bytes = Number(a);
    const chunk = Buffer.alloc(Number(b), 0xa5);
    const before = (await client.request('count', 60_000)) as number;
    const t0 = process.hrtime.bigint();
    for (let sent = 0; sent < bytes; sent += chunk.length) await client.send(chunk);
    const after = (await client.request('count', 120_000)) as number;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    process.stdout.write(JSON.stringify({ bytes: after - before, seconds }) + '\n');
  }
  await client.close();
}
