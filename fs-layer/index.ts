// The fs-layer's surface: serve this host's exports to the mesh, and mount the
// /pj tree (every host's exports) with our own FUSE engine.
import { join } from 'node:path';
import type { Log } from '../common/log.js';
import type { Metrics } from '../common/metrics.js';
import type { ExportInfo, HostView } from '../manager/cluster-state.js';
import type { Mesh } from '../manager/mesh/mesh.js';
import type { TrafficLedger } from '../migrator/index.js';
import { localBackend, remoteBackend, serveExports, type FsBackend } from './backend.js';
import { DataCache } from './data-cache.js';
import { DeviceServer } from './device-server.js';
import { ExportServer } from './export-server.js';
import { PjFilesystem } from './filesystem.js';
import { FuseSession } from './fuse-session.js';
import { FuseKeeper } from './fuse-keeper.js';
import { MountWatchdog, type MountHealth } from './mount-watchdog.js';
import { SessionJournal } from './session-journal.js';

export type { MountHealth } from './mount-watchdog.js';

export interface FsLayerOptions {
  self: string;
  mount: string;
  /** Where the connection's keeper and journal are named, for the next agent to take over. */
  stateDir: string;
  exports: ExportInfo[];
  mesh: Mesh;
  hosts: () => Promise<HostView[]>;
  log: Log;
  rpcTimeoutMs?: number;
  attrTimeoutS?: number;
  /** The byte limit of this agent's cache of remote file data (0: none). */
  dataCacheBytes?: number;
  ledger: TrafficLedger;
  metrics: Metrics;
}

export interface FsLayer {
  /** Whether local files are opened with kernel passthrough. */
  readonly passthrough: boolean;
  readonly mounted: boolean;
  /** Whether /pj answers, as its watchdog last found. */
  readonly health: MountHealth;
  readonly cache: DataCache;
  /** Gives up the POSIX locks that these threads hold on /pj files. */
  dropLocks(tids: number[]): Promise<number>;
  stop(): Promise<void>;
}

const HOSTS_CACHE_MS = 1000;
export const DEFAULT_DATA_CACHE_BYTES = 256 << 20;

export async function startFsLayer(o: FsLayerOptions): Promise<FsLayer> {
  const server = new ExportServer(o.exports);
  const devices = new DeviceServer(o.exports);
  serveExports(o.mesh, server, devices, o.log);
  const backends = new Map<string, FsBackend>();
  const backend = (host: string): FsBackend => {
    let b = backends.get(host);
    if (!b) {
      b = host === o.self ? localBackend(host, server, devices) : remoteBackend(host, o.mesh, o.rpcTimeoutMs ?? 5000);
      backends.set(host, b);
    }
    return b;
  };
  let cached: { at: number; hosts: Promise<HostView[]> } | undefined;
  const hosts = () => {
    if (!cached || Date.now() - cached.at > HOSTS_CACHE_MS) cached = { at: Date.now(), hosts: o.hosts() };
    return cached.hosts;
  };
  let session: FuseSession | undefined;
  const cache = new DataCache(o.dataCacheBytes ?? DEFAULT_DATA_CACHE_BYTES);
  // A filesystem per connection: what the kernel knew of the last one (its nodes, handles, backing files) went with it.
  // At start, the connection a keeper held since the last agent died is taken back, with what its journal says.
  let fs: PjFilesystem | undefined;
  const keeper = new FuseKeeper(o.stateDir, o.mount, o.log);
  const journalPath = join(o.stateDir, 'fuse-journal');
  let journal: SessionJournal | undefined;
  const mount = async (): Promise<FuseSession> => {
    const taken = fs ? undefined : keeper.takeBack();
    journal = new SessionJournal(journalPath, taken !== undefined);
    const next = new PjFilesystem({
      self: o.self, hosts, backend, log: o.log, attrTimeoutS: o.attrTimeoutS ?? 1, cache,
      notify: (code, body) => session?.notify(code, body),
      ledger: o.ledger,
      metrics: o.metrics,
      device: () => ({ fd: session?.devFd ?? -1, passthrough: session?.info.passthrough ?? false }),
      localFd: (handle) => server.fd(handle),
      journal,
    });
    const previous = fs;
    fs = next;
    if (taken) {
      const files = next.restore(journal.read());
      session = FuseSession.takeOver(taken, o.mount, next.handle, o.log);
      o.log.info({ op: 'fuse-keeper', files, nodes: next.nodes.size }, 'open /pj files kept through the restart');
    } else {
      keeper.end();
      session = await FuseSession.mount(o.mount, next.handle, o.log);
      keeper.keep(session.devFd, session.connection, session.info);
    }
    previous?.releaseAll();
    return session;
  };
  const watchdog = new MountWatchdog({ mount: o.mount, log: o.log, remount: mount });
  try {
    watchdog.watch(await mount());
  } catch (e) {
    o.log.error({ op: 'fuse-mount', target: o.mount, err: (e as Error).message }, '/pj not mounted; exports are still served to other hosts');
  }
  o.metrics.collect('pj_mount_up', 'whether this host\'s /pj answers (its watchdog\'s last finding)', 'gauge',
    () => [{ labels: {}, value: session && watchdog.health.state === 'ok' ? 1 : 0 }]);
  o.metrics.collect('pj_mount_remounts_total', '/pj mounted again after it stopped answering', 'counter', () => [{ labels: {}, value: watchdog.health.remounts }]);
  return {
    get passthrough() { return session?.info.passthrough ?? false; },
    get mounted() { return session !== undefined; },
    get health() { return session ? watchdog.health : { state: 'down', since: '', detail: 'never mounted', remounts: 0 } as MountHealth; },
    cache,
    dropLocks: (tids) => fs?.dropLocks(new Set(tids)) ?? Promise.resolve(0),
    async stop() {
      watchdog.stop();
      const open = fs?.openFiles ?? 0;
      if (session && open > 0 && keeper.keeping) {
        // Programs have files open on /pj: an unmount would break them, the next agent takes them over.
        session.leave();
        o.log.info({ op: 'fuse-keeper', files: open }, 'left /pj to its keeper for the next agent');
      } else {
        await session?.unmount();
        keeper.end();
        journal?.close(true);
      }
      server.close();
      devices.close();
    },
  };
}
