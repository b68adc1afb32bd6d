// The agent's control socket: the CLI's only way in. A unix socket (mode 0666:
// every local user may ask) carrying one JSON line per request and per reply.
// The caller is identified with SO_PEERCRED and handed to the handler, which
// decides what it may do (migrator/job-access.ts).
import net from 'node:net';
import { chmodSync, rmSync } from 'node:fs';
import { PjError, codes, errorFromWire, errorToWire, type SerializedError } from '../common/errors.js';
import type { Log } from '../common/log.js';
import { peerCred } from '../native/loader.js';
import type { PeerCredentials } from '../native/binding.js';

export interface ControlRequest { op: string; args?: Record<string, unknown> }
type Reply = { ok: true; result: unknown } | { ok: false; error: SerializedError };
export type ControlHandler = (req: ControlRequest, caller: PeerCredentials) => Promise<unknown>;

const MAX_LINE = 1024 * 1024;

export class ControlServer {
  #server: net.Server;
  constructor(private readonly path: string, handler: ControlHandler, log: Log) {
    this.#server = net.createServer((socket) => {
      let caller: PeerCredentials;
      try {
        caller = peerCred((socket as unknown as { _handle: { fd: number } })._handle.fd);
      } catch (e) {
        log.warn({ op: 'control-reject', reason: (e as Error).message }, 'cannot identify control caller');
        return socket.destroy();
      }
      let buf = '';
      socket.setEncoding('utf8');
      socket.on('error', () => {});
      socket.on('data', (chunk: string) => {
        buf += chunk;
        if (buf.length > MAX_LINE) return void socket.destroy();
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          void this.#serve(line, caller, handler).then((reply) => { if (!socket.destroyed) socket.write(JSON.stringify(reply) + '\n'); });
        }
      });
    });
  }

  async #serve(line: string, caller: PeerCredentials, handler: ControlHandler): Promise<Reply> {
    try {
      const req = JSON.parse(line) as ControlRequest;
      if (typeof req?.op !== 'string') throw new PjError(codes.USAGE, 'control request needs an op');
      return { ok: true, result: await handler(req, caller) };
    } catch (e) {
      return { ok: false, error: errorToWire(e instanceof SyntaxError ? new PjError(codes.USAGE, `bad control request: ${e.message}`) : e) };
    }
  }

  listen(): Promise<void> {
    rmSync(this.path, { force: true });
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.path, () => {
        chmodSync(this.path, 0o666);
        resolve();
      });
    });
  }

  close(): Promise<void> {
    return new Promise((r) => this.#server.close(() => { rmSync(this.path, { force: true }); r(); }));
  }
}

/** Sends one request to an agent's control socket and waits for its reply. */
export function callControl(path: string, op: string, args: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(path);
    let buf = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new PjError(codes.TIMEOUT, `agent at ${path} did not answer '${op}' within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (f: () => void) => { clearTimeout(timer); socket.destroy(); f(); };
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(JSON.stringify({ op, args }) + '\n'));
    socket.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const reply = JSON.parse(buf.slice(0, nl)) as Reply;
      done(() => (reply.ok ? resolve(reply.result) : reject(errorFromWire(reply.error))));
    });
    socket.on('error', (e: NodeJS.ErrnoException) => done(() => reject(new PjError(codes.AGENT_UNAVAILABLE,
      `no agent answers at ${path} (${e.code ?? e.message}); is the cluster up? (pj cluster up)`))));
    socket.on('end', () => done(() => reject(new PjError(codes.AGENT_UNAVAILABLE, `agent at ${path} closed the control connection`))));
  });
}
