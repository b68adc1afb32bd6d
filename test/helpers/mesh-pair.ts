// Two meshes on loopback that know each other's address: for tests of the
// mesh itself, with real sockets and no cluster around them.
import type { Test } from 'tap';
import { silentLog } from '../../common/log.js';
import { PjError, codes } from '../../common/errors.js';
import { Mesh, type PeerAddress } from '../../manager/mesh/mesh.js';

export const SECRET = Buffer.from('0123456789abcdef0123456789abcdef');

export async function meshPair(t: Test, opts: { clientSecret?: Buffer } = {}): Promise<{ a: Mesh; b: Mesh; addresses: Map<string, PeerAddress> }> {
  const addresses = new Map<string, PeerAddress>();
  const resolvePeer = async (h: string) => {
    const a = addresses.get(h);
    if (!a) throw new PjError(codes.NO_SUCH_HOST, `no host ${h}`, { host: h });
    return a;
  };
  const a = new Mesh({ self: 'a', secret: opts.clientSecret ?? SECRET, log: silentLog, resolvePeer });
  const b = new Mesh({ self: 'b', secret: SECRET, log: silentLog, resolvePeer });
  for (const [name, m] of [['a', a], ['b', b]] as const) {
    const { port } = await m.listen('127.0.0.1', 0);
    addresses.set(name, { address: '127.0.0.1', port });
  }
  t.teardown(async () => { await a.close(); await b.close(); });
  return { a, b, addresses };
}
