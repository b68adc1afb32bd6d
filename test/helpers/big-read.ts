// Asks a manager's export for one read of SIZE bytes over the mesh (as a peer,
// with the cluster secret), then for a stat: prints what each answered.
//   node big-read.js ADDR:PORT PEER_NAME SECRET_FILE EXPORT PATH SIZE
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { clientHandshake } from '../../manager/mesh/handshake.js';
import { PeerConnection } from '../../manager/mesh/peer-connection.js';

const [target, peer, secretFile, exp, path, size] = process.argv.slice(2);
const [host, port] = target.split(':');
const socket = net.connect(Number(port), host);
await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
const { leftover } = await clientHandshake(socket, 'reader', peer, readFileSync(secretFile), 2000);
const conn = new PeerConnection(socket, peer, leftover, new Map());
const outcome = (p: Promise<unknown>) => p.then((v) => ({ ok: v }), (e: { code?: string; message: string }) => ({ error: e.code ?? e.message }));
const { handle } = (await conn.call('fs', { op: 'open', args: [exp, path, 0] }, 10_000)) as { handle: number };
const read = await outcome(conn.call('fs', { op: 'read', args: [handle, 0, Number(size)] }, 30_000).then((pieces) => (pieces as Buffer[]).reduce((n, p) => n + p.length, 0)));
const after = await outcome(conn.call('fs', { op: 'lstat', args: [exp, path] }, 10_000).then(() => 'served'));
console.log(JSON.stringify({ read, after }));
conn.close('done');
