// The manager daemon (`pj agent`): joins the cluster in etcd, serves the mesh
// and the control socket, and wires the layers (later issues plug in here).
import { mkdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { PjError, codes } from '../common/errors.js';
import { faultActive } from '../common/fault.js';
import { createLog } from '../common/log.js';
import { Metrics } from '../common/metrics.js';
import { VERSION } from '../common/version.js';
import { ClusterState, type ExportInfo, type HostRecord } from './cluster-state.js';
import { ControlServer, type ControlRequest } from './control-socket.js';
import { checkExport, checkUniqueNames } from './exports.js';
import { Mesh } from './mesh/mesh.js';
import { pingPeer, registerDiagnosticMethods, streamToPeer } from './mesh-diagnostics.js';
import { serveMetrics } from './metrics-server.js';
import { readSecretFile } from './secret.js';
import { startFsLayer, type FsLayer } from '../fs-layer/index.js';
import { JOBS_EXPORT, ProcReader, TrafficLedger, jobsPath, startMigrator, type JobRecord, type MigratorLayer, type PolicyTuning } from '../migrator/index.js';
import { startNetLayer, type NetLayer, type PublishingJob, type Route } from '../net-layer/index.js';
import type { ClosedToJobs } from '../net-layer/outside.js';
import { lookup } from 'node:dns/promises';
import { rootOnly } from '../migrator/job-access.js';
import type { PeerCredentials } from '../native/binding.js';

const publishingJob = (r: JobRecord): PublishingJob => ({ id: r.id, host: r.host, pid: r.pid, origin: r.origin, running: r.state === 'running', publish: r.publish ?? [] });

export interface AgentOptions {
  host: string;
  listen: { address: string; port: number };
  etcd: string;
  secretFile: string;
  stateDir: string;
  exports: ExportInfo[];
  mount: string;
  controlSocket: string;
  /** How long the kernel may trust names and attributes of /pj (NFS's actimeo). */
  attrTimeoutS: number;
  /** The deadline of every /pj RPC to another host. */
  rpcTimeoutMs: number;
  /** The byte limit of the cache of remote file data. */
  dataCacheBytes?: number;
  /** The byte limit of the page store (jobs' memory by content). */
  pageStoreBytes?: number;
  /** Routes this agent adds to the cluster's (--route). */
  routes?: Route[];
  /** What an hour of this host costs (--price), for the policy 'cheap'. */
  price?: number;
  /** The CPU load above which the policy 'balance' sheds jobs (--max-load; default: the CPUs). */
  maxLoad?: number;
  /** Where to serve Prometheus metrics (--metrics). */
  metrics?: { address: string; port: number };
  /** The policy's horizon and minimum stay. */
  tuning?: PolicyTuning;
}

export interface RunningAgent { stop(): Promise<void> }

export async function runAgent(opts: AgentOptions): Promise<RunningAgent> {
  const secret = readSecretFile(opts.secretFile);
  checkUniqueNames(opts.exports);
  opts.exports.filter((e) => e.kind === 'dir').forEach(checkExport);
  mkdirSync(opts.stateDir, { recursive: true });
  mkdirSync(dirname(opts.controlSocket), { recursive: true });
  const log = createLog({ host: opts.host, file: join(opts.stateDir, 'agent.log') });
  // A promise nobody awaited that fails must not end the agent (and with it /pj and every job's output).
  process.on('unhandledRejection', (e) => log.error({ op: 'unhandled', err: (e as Error)?.stack ?? String(e) }, 'a failure nobody handled; serving on'));
  for (const d of opts.exports.filter((e) => e.kind === 'device')) {
    // A device may come and go (a USB serial adapter): it is served whenever it is there.
    try { checkExport(d); } catch (e) { log.warn({ op: 'device-missing', device: d.name, err: (e as Error).message }, 'device not there yet'); }
  }

  const metrics = new Metrics();
  const metricsServer = opts.metrics && (await serveMetrics(metrics, opts.metrics.address, opts.metrics.port).catch((e: NodeJS.ErrnoException) => {
    throw new PjError(codes.USAGE, `cannot serve metrics on ${opts.metrics!.address}:${opts.metrics!.port}: ${e.code ?? e.message}`);
  }));
  const state = new ClusterState(opts.etcd, log);
  await state.waitReady(10_000);
  const mesh = new Mesh({
    self: opts.host,
    secret,
    log,
    resolvePeer: async (name) => {
      const rec = await state.liveHost(name);
      return { address: rec.address, port: rec.port };
    },
  });
  registerDiagnosticMethods(mesh);
  const bound = await mesh.listen(opts.listen.address, opts.listen.port).catch((e: NodeJS.ErrnoException) => {
    throw new PjError(codes.USAGE, `cannot listen on ${opts.listen.address}:${opts.listen.port}: ${e.code ?? e.message}`);
  });

  // The files of the jobs started here (their output and exit status) are an export of their own: /pj/<host>/.pj-jobs,
  // written by the jobs wherever they moved to (as themselves: not squashed).
  mkdirSync(jobsPath(opts.stateDir), { recursive: true });
  const exports: ExportInfo[] = [...opts.exports, { name: JOBS_EXPORT, path: jobsPath(opts.stateDir), readOnly: false, kind: 'dir', squash: 'none' }];
  const record: HostRecord = {
    name: opts.host,
    address: opts.listen.address,
    port: bound.port,
    pid: process.pid,
    exports,
    capabilities: { fuse: false, passthrough: false, migration: false, pager: false, proxy: false },
    version: VERSION,
    startedAt: new Date().toISOString(),
    price: opts.price ?? 1,
    maxLoad: opts.maxLoad ?? availableParallelism(),
  };
  const procs = new ProcReader();
  procs.onStuck = (what) => log.warn({ op: 'proc-reader', what }, 'a /proc read did not finish: a process holds its lock; reading on a fresh thread');
  const ledger = new TrafficLedger(procs);
  const rpcSeconds = metrics.histogram('pj_rpc_seconds', 'mesh calls this manager made, by peer: how long each took');
  mesh.onCallDone((c) => rpcSeconds.observe({ peer: c.host, outcome: c.ok ? 'ok' : 'error' }, c.seconds));
  metrics.collect('pj_ledger_bytes_total', 'the traffic ledger: bytes each job moved to or from each host, by layer', 'counter',
    () => ledger.snapshot().map((r) => ({ labels: { job: r.id ?? r.job, target: r.target, layer: r.layer }, value: r.bytes })));
  metrics.collect('pj_ledger_operations_total', 'the traffic ledger: operations each job made to each host, by layer', 'counter',
    () => ledger.snapshot().map((r) => ({ labels: { job: r.id ?? r.job, target: r.target, layer: r.layer }, value: r.ops })));
  const fsLayer = await startFsLayer({ self: opts.host, mount: opts.mount, stateDir: opts.stateDir, exports, mesh, hosts: () => state.hostsOrLastKnown(), log, ledger, metrics,
    attrTimeoutS: opts.attrTimeoutS, rpcTimeoutMs: opts.rpcTimeoutMs, dataCacheBytes: opts.dataCacheBytes });
  record.capabilities.fuse = fsLayer.mounted;
  record.capabilities.passthrough = fsLayer.passthrough;
  // Jobs' inits find the manager of whichever host they run on at the same path.
  const net = await startNetLayer({ self: opts.host, address: opts.listen.address, socketPath: join(dirname(opts.controlSocket), 'net.sock'), stateDir: opts.stateDir,
    mesh, etcd: state.etcd, log, ledger, metrics, routes: opts.routes ?? [], closedToJobs: await etcdAddresses(opts.etcd),
    jobs: async () => (await state.jobs.list<JobRecord>()).map((j) => publishingJob(j.value)),
    job: async (id) => { const j = await state.jobs.get<JobRecord>(id); return j && publishingJob(j.value); },
    userOf: async (pid) => {
      const r = (await state.jobs.list<JobRecord>()).find((j) => j.value.host === opts.host && j.value.pid === pid)?.value;
      return r && { uid: r.uid ?? 0, gid: r.gid ?? 0, groups: r.groups ?? [] };
    } });
  record.capabilities.proxy = true;
  const migrator = startMigrator({ self: opts.host, mount: opts.mount, stateDir: opts.stateDir, mesh, state, log, ledger, metrics, procs, tuning: opts.tuning, pageStoreBytes: opts.pageStoreBytes,
    net: { socketPath: join(dirname(opts.controlSocket), 'net.sock'), detach: (pid) => net.detach(pid), reattach: (pid) => net.reattach(pid) },
    dropFileLocks: (tids) => fsLayer.dropLocks(tids), mountState: () => fsLayer.health.state });
  record.capabilities.migration = fsLayer.mounted;
  // A test's fault: a start that takes a while here, where sources may already ask about their moves.
  if (faultActive('slow-start')) await new Promise((r) => setTimeout(r, 3000));
  await state.register(record);
  migrator.start();

  const control = new ControlServer(opts.controlSocket, (req, caller) => serveControl(req, caller, { state, mesh, record, ledger, fsLayer, migrator, net }), log);
  await control.listen();
  log.info({ op: 'agent-start', address: `${record.address}:${record.port}`, exports: opts.exports.map((e) => e.name), pid: process.pid }, 'agent up');

  return {
    async stop() {
      log.info({ op: 'agent-stop' }, 'agent stopping');
      await control.close();
      metricsServer?.close();
      migrator.stop();
      await net.stop();
      await fsLayer.stop();
      await mesh.close();
      await state.close();
      await procs.close();
      log.flush();
    },
  };
}

interface AgentParts { state: ClusterState; mesh: Mesh; record: HostRecord; ledger: TrafficLedger; fsLayer: FsLayer; migrator: MigratorLayer; net: NetLayer }

const num = (v: unknown, dflt: number): number => (typeof v === 'number' && Number.isFinite(v) ? v : dflt);

/** etcd's endpoints (comma-separated URLs) as addresses: jobs may not reach them. */
async function etcdAddresses(endpoints: string): Promise<ClosedToJobs> {
  const out: ClosedToJobs = [];
  for (const e of endpoints.split(',')) {
    try {
      const u = new URL(e.includes('://') ? e : `http://${e}`);
      const port = Number(u.port || 2379);
      for (const a of await lookup(u.hostname.replace(/^\[|\]$/g, ''), { all: true })) out.push({ ip: a.address, port });
    } catch { /* an endpoint that does not resolve here: nothing to close */ }
  }
  return out;
}

/** What only root may ask of an agent: the rest any local user may (their own jobs only: migrator/job-access.ts). */
const ROOT_ONLY = new Set(['cache', 'stream']);

async function serveControl(req: ControlRequest, caller: PeerCredentials, { state, mesh, record, ledger, fsLayer, migrator, net }: AgentParts): Promise<unknown> {
  const { cache } = fsLayer;
  const a = req.args ?? {};
  if (ROOT_ONLY.has(req.op)) await rootOnly(caller, `ask '${req.op}'`);
  switch (req.op) {
    case 'status':
      return { ...record, uptimeS: Math.round(process.uptime()), calls: mesh.callCounts(), mount: fsLayer.health };
    case 'hosts':
      return state.hosts();
    case 'ledger':
      return ledger.snapshot();
    case 'routes':
      return { routes: await net.routes(), ...(await net.stats()) };
    case 'cache':
      if (a.drop === true) cache.drop();
      return cache.stats();
    case 'ping': {
      const host = String(a.host ?? '');
      return pingPeer(mesh, host, num(a.count, 1), num(a.size, 0), num(a.timeoutMs, 5000));
    }
    case 'stream': {
      const host = String(a.host ?? '');
      return streamToPeer(mesh, host, num(a.bytes, 64 << 20), num(a.chunk, 1 << 20), num(a.timeoutMs, 5000));
    }
    default:
      return migrator.control(req.op, a, caller) ?? Promise.reject(new PjError(codes.USAGE, `unknown control op '${req.op}'`));
  }
}
