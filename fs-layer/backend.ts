// Where an export's operations run: on this host (the ExportServer and
// DeviceServer directly) or on the owner host (the same servers there, over the mesh).
import type { Log } from '../common/log.js';
import type { Mesh } from '../manager/mesh/mesh.js';
import { randomBytes } from 'node:crypto';
import { PjError, codes } from '../common/errors.js';
import { crashPoint } from '../common/fault.js';
import { CHANGES, ChangesOnce } from './changes-once.js';
import type { DeviceServer } from './device-server.js';
import type { Caller, ExportServer } from './export-server.js';

/** The ExportServer operations a remote host may call, by name. */
export const REMOTE_OPS = ['lstat', 'fstat', 'readdir', 'open', 'create', 'read', 'write', 'fsync', 'release', 'mkdir', 'unlink', 'rmdir',
  'rename', 'symlink', 'readlink', 'link', 'setattr', 'statfs', 'getlk', 'setlk', 'mknod', 'fallocate', 'lseek', 'copyFileRange',
  'getxattr', 'listxattr', 'setxattr', 'removexattr'] as const;
export type RemoteOp = (typeof REMOTE_OPS)[number];
export const DEVICE_OPS = ['deviceStat', 'openDevice', 'readDevice', 'writeDevice', 'pollDevice', 'releaseDevice'] as const;
export type DeviceOp = (typeof DEVICE_OPS)[number];

type DevicePromised<T> = { [K in DeviceOp]: T extends Record<K, (...a: infer A) => infer R> ? (...a: A) => Promise<Awaited<R>> : never };
type Promised<T> = { [K in RemoteOp]: T extends Record<K, (...a: infer A) => infer R> ? (...a: A) => Promise<Awaited<R>> : never };
/** An export's operations, wherever they run. `read` gives the data as pieces: over the mesh it arrives that way, uncopied. */
export type FsBackend = Omit<Promised<ExportServer>, 'read'> & DevicePromised<DeviceServer> & {
  read(handle: number, offset: number, size: number): Promise<Buffer[]>;
  readonly local: boolean;
  readonly host: string;
  /** Resolves once the owner answers again (a ping; at once for this host). */
  answering(): Promise<void>;
  /**
   * The same operations asked for `who` (the FUSE request's uid and gid): the owner of a remote
   * export squashes them as the export says (export-server.ts asPeer). This host's own are never squashed.
   */
  as(who: Caller): FsBackend;
};

export function localBackend(host: string, server: ExportServer, devices: DeviceServer): FsBackend {
  const b = { local: true, host } as Record<string, unknown>;
  for (const op of REMOTE_OPS) b[op] = async (...args: unknown[]) => (server[op] as (...a: unknown[]) => unknown)(...args);
  for (const op of DEVICE_OPS) b[op] = async (...args: unknown[]) => (devices[op] as (...a: unknown[]) => unknown)(...args);
  b.read = async (handle: number, offset: number, size: number) => [await server.read(handle, offset, size)];
  b.answering = async () => {};
  b.as = () => b;
  return b as unknown as FsBackend;
}

/**
 * Operations asked again when the owner's connection drops (its manager restarting): asking twice
 * changes nothing. Changes (create, rename, unlink…) are asked again by name (CHANGES); the others
 * fail at once. Writes are sent again by OpenFile, in order.
 */
const ASKED_AGAIN = new Set<string>(['lstat', 'fstat', 'readdir', 'open', 'read', 'fsync', 'statfs', 'getlk', 'setlk', 'readlink', 'lseek',
  'getxattr', 'listxattr', 'setattr', 'deviceStat']);
/** How long an operation waits for an owner's manager to come back (a restart takes a few seconds). */
export const OWNER_RESTART_MS = 15_000;
/** How often a call waiting for an owner's manager asks again. */
export const ASK_AGAIN_MS = 500;

export function remoteBackend(host: string, mesh: Mesh, timeoutMs: number): FsBackend {
  const b = { local: false, host } as Record<string, unknown>;
  /** Since when the owner has not been reachable: past OWNER_RESTART_MS it is down, and calls fail at once until one gets through. */
  let downSince: number | undefined;
  const ask = async (op: string, args: unknown[], who?: Caller): Promise<unknown> => {
    // A change is named, so that the owner does it once however often it is asked (changes-once.ts).
    const rid = CHANGES.has(op) ? randomBytes(8).toString('hex') : undefined;
    for (let again = false; ; again = true) {
      try {
        const r = await mesh.call(host, 'fs', { op, args, ...(rid ? { rid, again } : {}), ...(who ? { who } : {}) }, timeoutMs);
        downSince = undefined;
        return r;
      } catch (e) {
        if ((e as PjError).code !== codes.HOST_UNREACHABLE) throw e;
        downSince ??= Date.now();
        if (!(ASKED_AGAIN.has(op) || rid) || Date.now() - downSince > OWNER_RESTART_MS) throw e;
      }
      await new Promise((r) => setTimeout(r, ASK_AGAIN_MS));
    }
  };
  for (const op of [...REMOTE_OPS, ...DEVICE_OPS]) b[op] = (...args: unknown[]) => ask(op, args);
  // A device read or write waits on the owner for a bounded time (its waitMs): give the RPC that much more.
  b.readDevice = async (handle: number, size: number, waitMs: number) =>
    Buffer.concat((await mesh.call(host, 'fs', { op: 'readDevice', args: [handle, size, waitMs] }, timeoutMs + waitMs)) as Buffer[]);
  b.writeDevice = (handle: number, data: Buffer, waitMs: number) => mesh.call(host, 'fs', { op: 'writeDevice', args: [handle, data, waitMs] }, timeoutMs + waitMs);
  b.write = (handle: number, offset: number, data: Buffer) => mesh.call(host, 'fs', { op: 'write', args: [handle, offset] }, timeoutMs, data);
  const views = new Map<string, FsBackend>();
  b.as = (who: Caller) => {
    const key = `${who.uid}:${who.gid}`;
    let v = views.get(key);
    if (!v) {
      const view = Object.create(b) as Record<string, unknown>;
      for (const op of REMOTE_OPS) view[op] = (...args: unknown[]) => ask(op, args, { uid: who.uid, gid: who.gid });
      view.write = b.write; // by handle: opened as who already
      views.set(key, (v = view as unknown as FsBackend));
    }
    return v;
  };
  let ping: Promise<void> | undefined;
  b.answering = () => (ping ??= (async () => {
    for (;;) {
      try {
        await mesh.call(host, 'ping', {}, timeoutMs);
        return;
      } catch (e) {
        if ((e as PjError).code !== codes.TIMEOUT) return; // gone rather than silent: calls find out for themselves
      }
    }
  })().finally(() => (ping = undefined)));
  return b as unknown as FsBackend;
}

/**
 * The owner's side: serves `fs` RPCs from other hosts with the local servers. What a host opens is
 * held for it; when its manager goes away, its files are closed and its locks dropped.
 */
export function serveExports(mesh: Mesh, server: ExportServer, devices: DeviceServer, log: Log): void {
  const fileOps = new Set<string>(REMOTE_OPS);
  const deviceOps = new Set<string>(DEVICE_OPS);
  const once = new ChangesOnce(server);
  mesh.handle('fs', (req: { op: string; args: unknown[]; rid?: string; again?: boolean; who?: Caller }, ctx) => {
    if (!req || !Array.isArray(req.args)) throw new PjError(codes.USAGE, 'bad fs request');
    if (req.who !== undefined && !(Number.isInteger(req.who?.uid) && Number.isInteger(req.who?.gid))) throw new PjError(codes.USAGE, 'bad fs request: who must be { uid, gid }');
    if (req.op === 'write' && ctx.attachment) return server.writePieces(req.args[0] as number, req.args[1] as number, ctx.attachment);
    if (fileOps.has(req.op)) {
      // An operation on a path: as the export treats the asking host and its caller; one on a handle was checked when it was opened.
      const exp = req.args[0];
      const run = () => {
        const op = () => (server[req.op as RemoteOp] as (...a: unknown[]) => unknown)(...req.args);
        const r = typeof exp === 'string' ? server.asPeer(ctx.from, req.who, exp, op) : op();
        if (req.op === 'open' || req.op === 'create') server.adopt((r as { handle: number }).handle, ctx.from);
        return r;
      };
      if (typeof req.rid === 'string' && CHANGES.has(req.op)) {
        return once.run(ctx.from, req.rid, req.again === true, req.op, req.args, () => {
          const r = run();
          crashPoint('owner-after-change'); // made, never answered: the client asks again the owner that comes back
          return r;
        });
      }
      return run();
    }
    if (deviceOps.has(req.op)) {
      const r = (devices[req.op as DeviceOp] as (...a: unknown[]) => unknown)(...req.args);
      if (req.op === 'openDevice') devices.adopt((r as { handle: number }).handle, ctx.from);
      return r;
    }
    throw new PjError(codes.USAGE, `bad fs request '${req.op}'`);
  });
  mesh.onPeerGone((host) => {
    const released = server.releaseClient(host) + devices.releaseClient(host);
    if (released) log.warn({ op: 'fs-peer-gone', peer: host, released }, 'closed the files a vanished host held open');
  });
}
