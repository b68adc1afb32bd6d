// The net-layer's surface: jobs' connections carried to the host a route names,
// kept across moves (detach before a dump, reattach after), and the mesh
// methods by which other hosts open, resume, pause and close connections held here.
import { dirname, join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import type { Log } from '../common/log.js';
import type { Metrics } from '../common/metrics.js';
import type { Mesh } from '../manager/mesh/mesh.js';
import type { TrafficLedger } from '../migrator/ledger.js';
import { resolveHere, SyntheticNames } from './dns.js';
import { InitChannels } from './init-channel.js';
import { HolderLink } from './holder.js';
import { CONNECT_TIMEOUT_MS, OutsideConnections, type ClosedToJobs } from './outside.js';
import { RouteTable, type Route, type RouteUser } from './routes.js';
import { Publisher, type PublishingJob } from './publish.js';
import type { Ticket } from './outside.js';

export { parseRoute, routeLimits, type Route, type RouteUser } from './routes.js';
export { RELAY_PORT, DNS_PORT } from './messages.js';
export { parsePublish, type PublishedPort, type PublishingJob } from './publish.js';

export interface NetLayerOptions {
  self: string;
  /** This host's mesh address: tunnels from other hosts come to it. */
  address: string;
  /** Where jobs' inits find this manager: the same path on every host. */
  socketPath: string;
  /** The manager's state dir (the connection holder's log). */
  stateDir: string;
  mesh: Mesh;
  etcd: Etcd3;
  log: Log;
  ledger: TrafficLedger;
  metrics: Metrics;
  routes: Route[];
  /** Addresses jobs may not connect to. */
  closedToJobs: ClosedToJobs;
  /** The jobs (from the job table), for published ports. */
  jobs: () => Promise<PublishingJob[]>;
  job: (id: string) => Promise<PublishingJob | undefined>;
  /** Who the job whose first process on this host is `initPid` runs as. */
  userOf: (initPid: number) => Promise<RouteUser | undefined>;
}

export interface NetLayer {
  detach(initPid: number): Promise<void>;
  reattach(initPid: number): void;
  routes(): Promise<Route[]>;
  stats(): Promise<{ connections: number; tunnels: number }>;
  stop(): Promise<void>;
}

export async function startNetLayer(o: NetLayerOptions): Promise<NetLayer> {
  const routes = new RouteTable(o.etcd);
  await routes.add(o.routes);
  const names = new SyntheticNames(o.etcd);
  const holder = new HolderLink({ socketPath: join(dirname(o.socketPath), 'holder.sock'), address: o.address, logFile: join(o.stateDir, 'holder.log'), log: o.log });
  await holder.open();
  const outside = new OutsideConnections(holder, o.address, o.closedToJobs);
  const channels = new InitChannels({ self: o.self, socketPath: o.socketPath, mesh: o.mesh, routes, names, outside, ledger: o.ledger, metrics: o.metrics, log: o.log, userOf: o.userOf });
  channels.listen();

  const key = (a: unknown): bigint => BigInt(String((a as { key?: unknown }).key ?? ''));
  o.mesh.handle('net-open', async (a) => {
    const { addr, name, port, job } = a as { addr: string; name?: string; port: number; job: string };
    const k = await outside.connect(addr, name, port, job, CONNECT_TIMEOUT_MS);
    return { key: String(k), ...(await outside.ticket(k)) };
  });
  o.mesh.handle('net-ticket', async (a) => outside.ticket(key(a)));
  o.mesh.handle('net-pause', async (a) => { await outside.pause(key(a)); return true; });
  o.mesh.handle('net-close', async (a) => { outside.close(key(a), Boolean((a as { reset?: boolean }).reset)); return true; });
  o.mesh.handle('net-inbound', async (a) => {
    const { pid, key: k, holder, jobPort, ticket } = a as { pid: number; key: string; holder: string; jobPort: number; ticket: Ticket };
    await channels.inbound(pid, BigInt(k), holder, jobPort, ticket);
    return true;
  });
  const publisher = new Publisher({ self: o.self, address: o.address, mesh: o.mesh, outside, channels, log: o.log, jobs: o.jobs, job: o.job });
  publisher.start();
  o.mesh.handle('net-resolve', async (a) => (await resolveHere(String((a as { name?: string }).name ?? ''))) ?? null);

  return {
    detach: (pid) => channels.detach(pid),
    reattach: (pid) => channels.reattach(pid),
    routes: () => routes.list(),
    stats: () => outside.stats(),
    stop: async () => {
      publisher.stop();
      outside.closeAll();
    },
  };
}
