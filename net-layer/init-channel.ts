// This host's side of its jobs' inits (native/init/relay.c): the seqpacket
// socket on which each init asks for links, resolves names, reports bytes, and
// is told to detach before a dump. A new connection goes where the routes say:
// connected here and handed to the init as is, or opened on the route's host
// and reached through a tunnel to it.
import { constants as os } from 'node:os';
import { loadBinding as native } from '../native/loader.js';
import type { Log } from '../common/log.js';
import type { Metrics } from '../common/metrics.js';
import type { Mesh } from '../manager/mesh/mesh.js';
import type { TrafficLedger } from '../migrator/ledger.js';
import { LINK_TUNNEL, Msg, SIG_REATTACH, decode, encode, type NetMsg } from './messages.js';
import { answer, parseQuery, resolveHere, TYPE_A, type SyntheticNames } from './dns.js';
import { CONNECT_TIMEOUT_MS, type OutsideConnections, type Ticket } from './outside.js';
import { mayUseRoute, routeLimits, type RouteTable, type RouteUser } from './routes.js';

/** Longer than the init waits for a holder to end each tunnel (relay.c's DRAIN_MS). */
const DETACH_TIMEOUT_MS = 30_000;

/** A tunnel to a connection `holder` keeps, opened with its one-time ticket. */
async function tunnelTo(holder: string, t: Ticket): Promise<number> {
  const r = await native().tcpConnect(t.address, t.port, CONNECT_TIMEOUT_MS, Buffer.from(t.token, 'hex'));
  if (typeof r !== 'number') throw Object.assign(new Error(`tunnel to ${holder}: errno ${r.errno}`), { errno: r.errno });
  return r;
}

interface Link { key: bigint; holder: string; tunnel: boolean; out: bigint; in: bigint }

const DNS_SERVFAIL = 2;

interface Channel {
  fd: number;
  pid: number;
  /** The ledger's name for the job (the init's pid until it is learned): for the logs. */
  job: string;
  links: Map<number, Link>;
  /** Links being made: a detach waits for them. */
  making: Set<Promise<void>>;
  /** Set while a detach is asked (the init's answer comes to it). */
  detached?: (m: NetMsg) => void;
  /** Inbound connections handed over, by key, until the init says which stream each is. */
  accepting: Map<bigint, (m: NetMsg) => void>;
}

export interface InitChannelParts {
  self: string;
  socketPath: string;
  mesh: Mesh;
  routes: RouteTable;
  names: SyntheticNames;
  outside: OutsideConnections;
  ledger: TrafficLedger;
  metrics: Metrics;
  log: Log;
  /** Who the job whose first process is `initPid` runs as (for the routes limited to some users). */
  userOf: (initPid: number) => Promise<RouteUser | undefined>;
}

export class InitChannels {
  #channels = new Map<number, Channel>();

  constructor(private readonly o: InitChannelParts) {}

  listen(): void {
    const ctx = {};
    const fd = native().seqpacketServe(this.o.socketPath, (cfd, data, fds, pid) => this.#message(cfd, data, fds, pid), ctx);
    if (fd === undefined) throw Object.assign(new Error(`cannot listen on ${this.o.socketPath}`), ctx);
  }

  /** Before a dump: the job's init closes its links (tunnels drained) and its channel. */
  async detach(initPid: number): Promise<void> {
    const ch = this.#channelOf(initPid);
    if (!ch) return; // it never connected: nothing to close
    await Promise.allSettled([...ch.making]);
    // A holder stops and half-closes each tunnel; the init reads them to their end when told to detach.
    const pauses = [...ch.links.values()].filter((l) => l.tunnel).map((l) => this.#pause(l).catch((e: Error) => {
      this.o.log.warn({ op: 'net-detach', job: ch.job, holder: l.holder, err: e.message }, 'a holder did not pause a tunnel');
    }));
    this.o.log.info({ op: 'net-detach', job: ch.job, links: ch.links.size, tunnels: pauses.length }, 'detaching the job\'s connections');
    const done = new Promise<void>((resolve, reject) => {
      // A tunnel whose holder did not end it in time is kept by the init, attached here: the move is given up.
      ch.detached = (m) => (m.err ? reject(new Error(`the holders of ${m.stream} of its connections did not end their tunnels within 20 s (the connections are kept)`)) : resolve());
      setTimeout(() => reject(new Error(`job ${ch.job}'s init did not detach within ${DETACH_TIMEOUT_MS} ms`)), DETACH_TIMEOUT_MS).unref();
    });
    this.#send(ch, { type: Msg.Detach });
    try {
      await done;
    } catch (e) {
      ch.detached = undefined;
      this.o.log.warn({ op: 'net-detach', job: ch.job, err: (e as Error).message }, 'the job\'s connections could not be detached');
      throw e;
    }
    await Promise.allSettled(pauses);
  }

  /** After a restore here (or a move that failed): the init asks this host for its links again. */
  reattach(initPid: number): void {
    try {
      process.kill(initPid, SIG_REATTACH);
    } catch { /* gone */ }
  }

  /**
   * A connection from outside for the job whose init is `initPid`, to its port `jobPort`: held at
   * `holder` as `key` (a ticket for the tunnel when that is another host).
   */
  async inbound(initPid: number, key: bigint, holder: string, jobPort: number, ticket?: Ticket): Promise<void> {
    const ch = this.#channelOf(initPid, true);
    if (!ch) throw new Error('the job is not attached here (moving?)');
    // A detach waits for it: the link must be known before the holders are asked to pause.
    const p = this.#handOver(ch, key, holder, jobPort, ticket);
    const tracked = p.catch(() => {}).finally(() => ch.making.delete(tracked));
    ch.making.add(tracked);
    return p;
  }

  async #handOver(ch: Channel, key: bigint, holder: string, jobPort: number, ticket?: Ticket): Promise<void> {
    let fd: number | undefined;
    try {
      fd = holder === this.o.self ? await this.o.outside.direct(key) : await tunnelTo(holder, ticket!);
      const accepted = new Promise<NetMsg>((resolve, reject) => {
        // The link is known as soon as the init names its stream, in the same turn: the CLOSED of a
        // connection the job ends at once may be the very next message.
        ch.accepting.set(key, (m) => {
          if (!m.err) ch.links.set(m.stream, { key, holder, tunnel: holder !== this.o.self, out: 0n, in: 0n });
          resolve(m);
        });
        setTimeout(() => reject(new Error('the job\'s init did not take the connection')), CONNECT_TIMEOUT_MS).unref();
      }).finally(() => ch.accepting.delete(key));
      if (!this.#send(ch, { type: Msg.Inbound, key, holder, port: jobPort, flags: holder === this.o.self ? 0 : LINK_TUNNEL }, [fd])) throw new Error('the job\'s init is gone');
      const m = await accepted;
      if (m.err) throw Object.assign(new Error(`the job refused it on port ${jobPort}`), { errno: m.err, refused: true });
    } finally {
      if (fd !== undefined) native().closeFd(fd);
    }
  }

  /** The open channel of the init `initPid` (a closed one has left the map); `attached`: not one that is detaching. */
  #channelOf(initPid: number, attached = false): Channel | undefined {
    return [...this.#channels.values()].find((c) => c.pid === initPid && !(attached && c.detached));
  }

  #pause(l: Link): Promise<unknown> {
    return l.holder === this.o.self ? this.o.outside.pause(l.key) : this.o.mesh.call(l.holder, 'net-pause', { key: String(l.key) }, DETACH_TIMEOUT_MS);
  }

  #send(ch: Channel, m: Partial<NetMsg> & { type: number }, fds: number[] = []): boolean {
    return native().seqpacketSend(ch.fd, encode(m), fds, {}) === true;
  }

  #message(fd: number, data: Buffer | null, fds: number[], pid: number): void {
    let ch = this.#channels.get(fd);
    if (data === null) {
      if (ch) this.#closed(ch);
      return;
    }
    if (!ch) {
      const opened: Channel = { fd, pid, job: `pid ${pid}`, links: new Map(), making: new Set(), accepting: new Map() };
      this.#channels.set(fd, (ch = opened));
      void this.o.ledger.jobOf(pid).then((job) => (opened.job = job)); // for the logs; learned off the event loop
    }
    for (const f of fds) native().closeFd(f); // inits send none
    const m = decode(data);
    if (!m) return this.o.log.warn({ op: 'net-init', job: ch.job, bytes: data.length }, 'malformed message from a job\'s init');
    switch (m.type) {
      case Msg.Open:
      case Msg.Attach: {
        const p = this.#link(ch, m).finally(() => ch!.making.delete(p));
        ch.making.add(p);
        return;
      }
      case Msg.Dns: return void this.#dns(ch, m);
      case Msg.Bytes: return this.#count(ch, m);
      case Msg.Closed: {
        this.#count(ch, m);
        const l = ch.links.get(m.stream);
        ch.links.delete(m.stream);
        if (l) void this.#close(l, m.err !== 0);
        if (l && m.err && ch.detached) this.o.log.warn({ op: 'net-detach', job: ch.job, holder: l.holder, errno: m.err }, 'a connection was lost in the move: its tunnel broke');
        return;
      }
      case Msg.Hello:
        return this.o.log.info({ op: 'net-job', job: ch.job, pid },
          'job attached: its TCP and DNS go through this host; its UDP (but DNS), ICMP and raw packets are refused (EPERM)');
      case Msg.Detached: return ch.detached?.(m);
      case Msg.Accepted: return ch.accepting.get(m.key)?.(m);
    }
  }

  #closed(ch: Channel): void {
    this.#channels.delete(ch.fd);
    if (ch.detached) return; // it detached: its links wait for it wherever it goes
    // Gone without detaching: the job ended (or this manager will not hear from it again).
    this.o.outside.orphan([...ch.links.values()].filter((l) => l.holder === this.o.self).map((l) => l.key));
  }

  async #close(l: Link, reset: boolean): Promise<void> {
    if (l.holder === this.o.self) return this.o.outside.close(l.key, reset);
    await this.o.mesh.call(l.holder, 'net-close', { key: String(l.key), reset }).catch(() => {});
  }

  #count(ch: Channel, m: NetMsg): void {
    const l = ch.links.get(m.stream);
    if (!l) return;
    const delta = Number(m.bytesOut - l.out + (m.bytesIn - l.in));
    l.out = m.bytesOut;
    l.in = m.bytesIn;
    if (delta <= 0) return;
    this.o.ledger.recordCaller(ch.pid, l.holder, 'net', 0, delta);
    this.o.metrics.counter('pj_proxy_bytes_total', 'bytes jobs\' connections moved, by the host that holds the outside end (via) and how they reach it')
      .inc({ via: l.holder, link: l.tunnel ? 'tunnel' : 'direct' }, delta);
  }

  /** A link for a new connection (OPEN) or for one from before a move (ATTACH). */
  async #link(ch: Channel, m: NetMsg): Promise<void> {
    const { self, outside, mesh } = this.o;
    let fd: number | undefined;
    try {
      let key = m.key;
      let holder = m.holder;
      let ticket: Ticket | undefined;
      if (m.type === Msg.Open) {
        const name = await this.o.names.nameOf(m.addr);
        const route = name ? await this.o.routes.forName(name) : await this.o.routes.forAddress(m.addr);
        const target = `${name ?? m.addr}:${m.port}`;
        if (route && !(await mayUseRoute(route, () => this.o.userOf(ch.pid)))) {
          throw Object.assign(new Error(`the route ${route.target}=${route.host} is for ${routeLimits(route)} only`), { errno: os.errno.ECONNREFUSED });
        }
        holder = route?.host ?? self;
        if (holder === self) {
          key = await outside.connect(m.addr, name, m.port, ch.job, CONNECT_TIMEOUT_MS);
        } else {
          const r = (await mesh.call(holder, 'net-open', { addr: m.addr, name, port: m.port, job: ch.job }, CONNECT_TIMEOUT_MS + 2000)) as Ticket & { key: string };
          key = BigInt(r.key);
          ticket = r;
        }
        this.o.log.debug({ op: 'net-open', job: ch.job, target, via: holder }, 'connection');
      }
      let flags = 0;
      if (holder === self) {
        fd = await outside.direct(key);
      } else {
        ticket ??= (await mesh.call(holder, 'net-ticket', { key: String(key) }, CONNECT_TIMEOUT_MS)) as Ticket;
        fd = await tunnelTo(holder, ticket);
        flags = LINK_TUNNEL;
      }
      const sent = this.#send(ch, { type: Msg.Opened, stream: m.stream, key, holder, flags }, [fd]);
      if (sent) ch.links.set(m.stream, { key, holder, tunnel: flags === LINK_TUNNEL, out: m.bytesOut, in: m.bytesIn });
    } catch (e) {
      const errno = (e as { errno?: number }).errno;
      this.o.log.info({ op: 'net-open', job: ch.job, target: `${m.addr}:${m.port}`, err: (e as Error).message }, 'connection refused to the job');
      this.#send(ch, { type: Msg.Opened, stream: m.stream, err: typeof errno === 'number' && errno > 0 ? errno : os.errno.ECONNREFUSED });
    } finally {
      if (fd !== undefined) native().closeFd(fd);
    }
  }

  async #dns(ch: Channel, m: NetMsg): Promise<void> {
    const q = parseQuery(m.payload);
    if (!q) return this.o.log.warn({ op: 'net-dns', job: ch.job, bytes: m.payload.length }, 'malformed DNS query dropped');
    let addrs: string[] | undefined = [];
    let rcode: number | undefined;
    try {
      if (q.type === TYPE_A) {
        const host = (await this.o.routes.forName(q.name))?.host;
        if (host) {
          const there = host === this.o.self ? await resolveHere(q.name)
            : ((await this.o.mesh.call(host, 'net-resolve', { name: q.name }).catch(() => null)) as string[] | null) ?? undefined;
          addrs = there ? [await this.o.names.addressOf(q.name)] : undefined;
        } else {
          addrs = await resolveHere(q.name);
        }
      }
    } catch (e) {
      // etcd away (a routed name's synthetic address is kept there): the job may ask again.
      this.o.log.warn({ op: 'net-dns', job: ch.job, name: q.name, err: (e as Error).message }, 'a name could not be looked up now: SERVFAIL');
      rcode = DNS_SERVFAIL;
    }
    this.#send(ch, { type: Msg.DnsReply, addr: m.addr, port: m.port, payload: answer(m.payload, q, addrs, rcode) });
  }
}
