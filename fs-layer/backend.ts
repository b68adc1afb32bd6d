// Where an export's operations run: on this host (the ExportServer directly)
// or on the owner host (the same ExportServer there, over the mesh).
import type { Mesh } from '../manager/mesh/mesh.js';
import { PjError, codes } from '../common/errors.js';
import type { ExportServer } from './export-server.js';

/** The ExportServer operations a remote host may call, by name. */
export const REMOTE_OPS = ['lstat', 'readdir', 'open', 'create', 'read', 'write', 'fsync', 'release', 'mkdir', 'unlink', 'rmdir',
  'rename', 'symlink', 'readlink', 'link', 'setattr', 'statfs', 'getlk', 'setlk', 'mknod', 'fallocate', 'lseek', 'copyFileRange',
  'getxattr', 'listxattr', 'setxattr', 'removexattr'] as const;
export type RemoteOp = (typeof REMOTE_OPS)[number];

type Promised<T> = { [K in RemoteOp]: T extends Record<K, (...a: infer A) => infer R> ? (...a: A) => Promise<Awaited<R>> : never };
/** An export's operations, wherever they run. `read` gives the data as pieces: over the mesh it arrives that way, uncopied. */
export type FsBackend = Omit<Promised<ExportServer>, 'read'> & {
  read(handle: number, offset: number, size: number): Promise<Buffer[]>;
  readonly local: boolean;
  readonly host: string;
};

export function localBackend(host: string, server: ExportServer): FsBackend {
  const b = { local: true, host } as Record<string, unknown>;
  for (const op of REMOTE_OPS) b[op] = async (...args: unknown[]) => (server[op] as (...a: unknown[]) => unknown)(...args);
  b.read = async (handle: number, offset: number, size: number) => [server.read(handle, offset, size)];
  return b as unknown as FsBackend;
}

export function remoteBackend(host: string, mesh: Mesh, timeoutMs: number): FsBackend {
  const b = { local: false, host } as Record<string, unknown>;
  for (const op of REMOTE_OPS) b[op] = (...args: unknown[]) => mesh.call(host, 'fs', { op, args }, timeoutMs);
  b.write = (handle: number, offset: number, data: Buffer) => mesh.call(host, 'fs', { op: 'write', args: [handle, offset] }, timeoutMs, data);
  return b as unknown as FsBackend;
}

/** The owner's side: serves `fs` RPCs from other hosts with the local ExportServer. */
export function serveExports(mesh: Mesh, server: ExportServer): void {
  const allowed = new Set<string>(REMOTE_OPS);
  mesh.handle('fs', (req: { op: string; args: unknown[] }, ctx) => {
    if (!req || !allowed.has(req.op) || !Array.isArray(req.args)) throw new PjError(codes.USAGE, `bad fs request '${req?.op}'`);
    if (req.op === 'write' && ctx.attachment) return server.writev(req.args[0] as number, req.args[1] as number, ctx.attachment);
    return (server[req.op as RemoteOp] as (...a: unknown[]) => unknown)(...req.args);
  });
}
