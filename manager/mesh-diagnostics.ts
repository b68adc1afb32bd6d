// Measuring the mesh from an agent: round trips and streamed throughput to a
// peer (`pj ping`, and the mesh benchmark). The peer side is two mesh methods.
import type { Mesh } from './mesh/mesh.js';

export function registerDiagnosticMethods(mesh: Mesh): void {
  mesh.handle('ping', (args: { payload?: Buffer }) => ({ payload: args?.payload ?? null }));
  mesh.handle('sink', async (_args, ctx) => {
    let bytes = 0;
    for await (const chunk of ctx.stream ?? []) bytes += chunk.length;
    return { bytes };
  });
}

export async function pingPeer(mesh: Mesh, host: string, count: number, size: number, timeoutMs: number): Promise<{ rttsMs: number[] }> {
  const payload = Buffer.alloc(size, 0x5a);
  const rttsMs: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    await mesh.call(host, 'ping', { payload }, timeoutMs);
    rttsMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return { rttsMs };
}

export async function streamToPeer(mesh: Mesh, host: string, totalBytes: number, chunkBytes: number, timeoutMs: number): Promise<{ bytes: number; seconds: number }> {
  const chunk = Buffer.alloc(chunkBytes, 0xa5);
  async function* source() {
    for (let sent = 0; sent < totalBytes; sent += chunkBytes) yield chunk;
  }
  const t0 = process.hrtime.bigint();
  const { bytes } = (await mesh.upload(host, 'sink', null, source(), timeoutMs)) as { bytes: number };
  return { bytes, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}
