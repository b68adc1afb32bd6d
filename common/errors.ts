// Errors of PicoJump. Our own carry permanent codes (PJ_ERR_*): messages may
// change, codes never. System errors look like Node's own fs errors: code,
// errno, syscall, path (CONVENTIONS.md, rules 2 and 3).
import { constants as osConstants } from 'node:os';
import { getSystemErrorMap } from 'node:util';

export const codes = {
  HOST_UNREACHABLE: 'PJ_ERR_HOST_UNREACHABLE',
  TIMEOUT: 'PJ_ERR_TIMEOUT',
  AUTH_FAILED: 'PJ_ERR_AUTH_FAILED',
  PROTOCOL: 'PJ_ERR_PROTOCOL',
  USAGE: 'PJ_ERR_USAGE',
  NO_SUCH_HOST: 'PJ_ERR_NO_SUCH_HOST',
  NO_SUCH_METHOD: 'PJ_ERR_NO_SUCH_METHOD',
  AGENT_UNAVAILABLE: 'PJ_ERR_AGENT_UNAVAILABLE',
  PERMISSION: 'PJ_ERR_PERMISSION',
  CLUSTER: 'PJ_ERR_CLUSTER',
  NATIVE_MISSING: 'PJ_ERR_NATIVE_MISSING',
  REMOTE: 'PJ_ERR_REMOTE',
  NOT_IMPLEMENTED: 'PJ_ERR_NOT_IMPLEMENTED',
  NO_SUCH_JOB: 'PJ_ERR_NO_SUCH_JOB',
  NOT_A_JOB: 'PJ_ERR_NOT_A_JOB',
  JOB_BUSY: 'PJ_ERR_JOB_BUSY',
  NOT_MIGRATABLE: 'PJ_ERR_NOT_MIGRATABLE',
  MIGRATION_ABORTED: 'PJ_ERR_MIGRATION_ABORTED',
  JOB_START: 'PJ_ERR_JOB_START',
  PAGES_LOST: 'PJ_ERR_PAGES_LOST',
  ETCD_UNAVAILABLE: 'PJ_ERR_ETCD_UNAVAILABLE',
  PAGE_STORE_FULL: 'PJ_ERR_PAGE_STORE_FULL',
} as const;
export type PjErrorCode = (typeof codes)[keyof typeof codes];

export class PjError extends Error {
  readonly code: PjErrorCode;
  /** The host the failure is about, when there is one. */
  readonly host?: string;
  constructor(code: PjErrorCode, message: string, opts: { host?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'PjError';
    this.code = code;
    if (opts.host !== undefined) this.host = opts.host;
  }
  toJSON(): SerializedError {
    return { code: this.code, message: this.message, ...(this.host ? { host: this.host } : {}) };
  }
}

export interface SerializedError { code: string; message: string; host?: string }

/** Rebuilds an error that crossed the mesh or the control socket; system errors keep their errno code. */
export function errorFromWire(e: SerializedError): PjError | NodeJS.ErrnoException {
  if (/^E[A-Z0-9]+$/.test(e.code) && e.code in osConstants.errno) {
    return Object.assign(new Error(e.message), { code: e.code, errno: -(osConstants.errno as Record<string, number>)[e.code] });
  }
  const code = (Object.values(codes) as string[]).includes(e.code) ? (e.code as PjErrorCode) : codes.REMOTE;
  const message = code === codes.REMOTE ? `${e.code}: ${e.message}` : e.message;
  return new PjError(code, message, e.host ? { host: e.host } : {});
}

/** Anything thrown, as it should travel over a wire. */
export function errorToWire(err: unknown): SerializedError {
  if (err instanceof PjError) return err.toJSON();
  const e = err as { code?: unknown; message?: unknown };
  return { code: typeof e?.code === 'string' ? e.code : 'PJ_ERR_REMOTE', message: String(e?.message ?? err) };
}

export interface SyscallContext { errno?: number; syscall?: string }

/** A Node-style system error from a native context, e.g. `EPERM: operation not permitted, ioctl`. */
export function systemError(ctx: Required<SyscallContext>, path?: string): NodeJS.ErrnoException {
  const [code, desc] = getSystemErrorMap().get(-ctx.errno) ?? [`E${ctx.errno}`, 'unknown error'];
  const err: NodeJS.ErrnoException = new Error(`${code}: ${desc}, ${ctx.syscall}${path ? ` '${path}'` : ''}`);
  err.code = code;
  err.errno = -ctx.errno;
  err.syscall = ctx.syscall;
  if (path) err.path = path;
  return err;
}

/** An error that carries an errno name (`ENOENT`, …): how the fs-layer fails a request. */
export function errnoError(code: string, message: string = code): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}
