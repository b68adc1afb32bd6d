// Published ports: `pj run --publish PORT[:JOBPORT]` opens PORT on the job's
// home host (or, with --publish-on all, on every host) and forwards each
// connection to JOBPORT of the job wherever it runs now. The accepted socket
// stays on the host that accepted it (a connection held here, like any
// outside end); the job's host hands it to the job's init, as is when the job
// runs here, else through a tunnel to here. A job in the middle of a move is
// waited for.
import net from 'node:net';
import { loadBinding as native } from '../native/loader.js';
import type { Log } from '../common/log.js';
import type { Mesh } from '../manager/mesh/mesh.js';
import type { InitChannels } from './init-channel.js';
import type { OutsideConnections } from './outside.js';

export interface PublishedPort { port: number; jobPort: number; everywhere: boolean }

/** What the publisher needs of a job (from the job table). */
export interface PublishingJob { id: string; host: string; pid: number; origin: string; running: boolean; publish: PublishedPort[] }

const SYNC_MS = 1000;
const DELIVER_DEADLINE_MS = 15_000;

/** The descriptor under a Node socket or server (its handle's). */
const fdOf = (s: net.Socket | net.Server): number => (s as unknown as { _handle: { fd: number } })._handle.fd;

/** Parses PORT[:JOBPORT]. */
export function parsePublish(spec: string, everywhere: boolean): PublishedPort {
  const m = /^(\d+)(?::(\d+))?$/.exec(spec);
  const port = Number(m?.[1]);
  const jobPort = Number(m?.[2] ?? m?.[1]);
  if (!m || !(port > 0 && port < 65536) || !(jobPort > 0 && jobPort < 65536)) throw new Error(`--publish ${spec}: want PORT or PORT:JOBPORT`);
  return { port, jobPort, everywhere };
}

export class Publisher {
  #listeners = new Map<number, { job: string; server: net.Server }>();
  /** The publishing jobs as last read: while etcd is away, connections still go where the job last was. */
  #known = new Map<string, PublishingJob>();
  #timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: {
    self: string; address: string; mesh: Mesh; outside: OutsideConnections; channels: InitChannels; log: Log;
    jobs: () => Promise<PublishingJob[]>; job: (id: string) => Promise<PublishingJob | undefined>;
  }) {}

  start(): void {
    this.#timer = setInterval(() => void this.sync().catch(() => {}), SYNC_MS);
    void this.sync().catch(() => {});
  }

  stop(): void {
    clearInterval(this.#timer);
    for (const l of this.#listeners.values()) l.server.close();
    this.#listeners.clear();
  }

  /** Opens the ports of running jobs that publish here, closes those of jobs that ended. */
  async sync(): Promise<void> {
    const wanted = new Map<number, PublishingJob & { jobPort: number }>();
    const jobs = await this.o.jobs();
    this.#known = new Map(jobs.map((j) => [j.id, j]));
    for (const j of jobs) {
      if (!j.running) continue;
      for (const p of j.publish) if (p.everywhere || j.origin === this.o.self) wanted.set(p.port, { ...j, jobPort: p.jobPort });
    }
    for (const [port, l] of this.#listeners) {
      if (wanted.get(port)?.id !== l.job) {
        l.server.close();
        this.#listeners.delete(port);
        this.o.outside.unpublish(port);
      }
    }
    for (const [port, j] of wanted) if (!this.#listeners.has(port)) void this.#listen(port, j.id, j.jobPort);
  }

  /**
   * Listens on `port` with the socket the holder kept (a manager before this one published the port:
   * what clients connected meanwhile waits in its backlog), else with a new one the holder then keeps.
   */
  async #listen(port: number, job: string, jobPort: number): Promise<void> {
    const server = net.createServer({ pauseOnConnect: true }, (sock) => void this.#accepted(sock, job, jobPort));
    this.#listeners.set(port, { job, server });
    server.on('error', (e) => {
      this.o.log.error({ op: 'net-publish', job, port, err: e.message }, 'cannot publish the port');
      this.#listeners.delete(port);
    });
    const kept = await this.o.outside.keptListener(port).catch((e: Error) => {
      this.o.log.warn({ op: 'net-publish', port, err: e.message }, 'the connection holder did not say whether it kept the port\'s listening socket');
      return undefined;
    });
    if (this.#listeners.get(port)?.server !== server) { // unpublished meanwhile
      if (kept !== undefined) native().closeFd(kept);
      return;
    }
    if (kept !== undefined) {
      return void server.listen({ fd: kept }, () => this.o.log.info({ op: 'net-publish', job, port, jobPort }, 'port published again with the listening socket the holder kept'));
    }
    server.listen(port, this.o.address, () => {
      this.o.log.info({ op: 'net-publish', job, port, jobPort }, 'port published');
      const fd = native().dupFd(fdOf(server), {});
      if (fd === undefined) return;
      this.o.outside.keepListener(fd, port, job).catch((e: Error) =>
        this.o.log.warn({ op: 'net-publish', job, port, err: e.message }, 'the connection holder did not keep the listening socket: connections wait for this manager only'));
    });
  }

  async #accepted(sock: net.Socket, job: string, jobPort: number): Promise<void> {
    // The socket is paused from the start (nothing read): its descriptor becomes a connection held here.
    const fd = native().dupFd(fdOf(sock), {});
    sock.destroy();
    if (fd === undefined) return;
    let key: bigint;
    try {
      key = await this.o.outside.adopt(fd, job, `inbound:${jobPort}`);
    } catch (e) {
      return this.o.log.warn({ op: 'net-inbound', job, port: jobPort, err: (e as Error).message }, 'inbound connection dropped: the connection holder did not take it');
    }
    const deadline = Date.now() + DELIVER_DEADLINE_MS;
    let why = '';
    while (Date.now() < deadline) {
      const j = await this.o.job(job).then((now) => { if (now) this.#known.set(job, now); return now; }, () => this.#known.get(job));
      if (!j || !j.running) { why = 'the job ended'; break; }
      try {
        if (j.host === this.o.self) await this.o.channels.inbound(j.pid, key, this.o.self, jobPort);
        else await this.o.mesh.call(j.host, 'net-inbound', { pid: j.pid, key: String(key), holder: this.o.self, jobPort, ticket: await this.o.outside.ticket(key) }, DELIVER_DEADLINE_MS);
        return;
      } catch (e) {
        why = (e as Error).message;
        if ((e as { refused?: boolean }).refused || /refused it on port/.test(why)) break;
        await new Promise((r) => setTimeout(r, 200)); // moving: asked again where it runs
      }
    }
    this.o.log.info({ op: 'net-inbound', job, port: jobPort, err: why }, 'inbound connection refused');
    this.o.outside.close(key, true);
  }
}
