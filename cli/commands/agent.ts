// `pj agent`: runs the manager daemon of this host in the foreground.
import type { Command } from 'commander';
import { PjError, codes } from '../../common/errors.js';
import type { ExportInfo } from '../../manager/cluster-state.js';
import { runAgent } from '../../manager/agent.js';
import { DEFAULT_DATA_CACHE_BYTES } from '../../fs-layer/index.js';
import { parseExportSpec } from '../../manager/exports.js';
import { DEFAULT_PAGE_STORE_BYTES, DEFAULT_TUNING } from '../../migrator/index.js';
import { parseRoute } from '../../net-layer/index.js';
import { action, reportError } from '../output.js';
import { parseSize } from '../units.js';

const collect = (v: string, prev: string[]) => [...prev, v];

function parseListen(s: string, flag = '--listen'): { address: string; port: number } {
  const i = s.lastIndexOf(':');
  const port = Number(s.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new PjError(codes.USAGE, `${flag} '${s}' must be ADDR:PORT`);
  return { address: s.slice(0, i), port };
}

function checkedNumber(flag: string, v: number, min: number, max: number): number {
  if (!Number.isFinite(v) || v < min || v > max) throw new PjError(codes.USAGE, `${flag} must be a number from ${min} to ${max}`);
  return v;
}

export function register(program: Command): void {
  program
    .command('agent')
    .description('run the manager of this host (one per host)')
    .requiredOption('--host <name>', 'this host\'s name in the cluster')
    .requiredOption('--listen <addr:port>', 'mesh address that peers connect to')
    .requiredOption('--etcd <url>', 'etcd endpoint, e.g. http://10.0.0.2:2379')
    .requiredOption('--secret-file <file>', 'cluster secret (mode 0600, >= 16 bytes)')
    .requiredOption('--state-dir <dir>', 'where this agent keeps logs and state')
    .option('--export <name=path[:options]>', 'offer a directory as /pj/<host>/<name>; options: ro, rw (default), root_squash (default), no_root_squash, all_squash, anonuid=N, anongid=N, hosts=H1+H2 (repeatable)', collect, [])
    .option('--device <name=path>', 'offer a character device as /pj/<host>/<name> (repeatable)', collect, [])
    .option('--mount <dir>', 'where the /pj tree is mounted', '/pj')
    .option('--control-socket <path>', 'the CLI\'s socket', '/run/pj/agent.sock')
    .option('--attr-timeout <seconds>', 'how long the kernel trusts /pj names and attributes', parseFloat, 1)
    .option('--rpc-timeout <ms>', 'deadline of each /pj request to another host', (v) => parseInt(v, 10), 5000)
    .option('--data-cache-mib <n>', 'memory for remote file data kept by this agent (0: none)', parseFloat, DEFAULT_DATA_CACHE_BYTES / (1 << 20))
    .option('--route <target=host>', 'reach CIDR or NAME (db.internal, *.corp) from HOST; kept in etcd for the whole cluster (repeatable)', collect, [])
    .option('--price <n>', 'what an hour of this host costs, in any unit the cluster agrees on (the policy cheap seeks the cheapest)', parseFloat, 1)
    .option('--max-load <cpus>', 'CPUs busy with jobs above which the policy balance sheds them (default: the CPUs)', parseFloat)
    .option('--metrics <addr:port>', 'serve Prometheus metrics at http://ADDR:PORT/metrics')
    .option('--policy-horizon <s>', 'a move by the policy must pay back within this many seconds', parseFloat, DEFAULT_TUNING.horizonS)
    .option('--min-stay <s>', 'no move by the policy sooner than this after a job\'s last move', parseFloat, DEFAULT_TUNING.minStayS)
    .option('--page-store-size <size>', 'disk for jobs\' pages kept by content, e.g. 512M, 4G (0: keep none)', `${DEFAULT_PAGE_STORE_BYTES / 1024 ** 3}G`)
    .action(action(async (o) => {
      const exports: ExportInfo[] = [
        ...(o.export as string[]).map((s) => parseExportSpec(s, 'dir')),
        ...(o.device as string[]).map((s) => parseExportSpec(s, 'device')),
      ];
      const agent = await runAgent({
        host: o.host, listen: parseListen(o.listen), etcd: o.etcd, secretFile: o.secretFile,
        stateDir: o.stateDir, exports, mount: o.mount, controlSocket: o.controlSocket,
        attrTimeoutS: checkedNumber('--attr-timeout', o.attrTimeout, 0, 3600), rpcTimeoutMs: checkedNumber('--rpc-timeout', o.rpcTimeout, 1, 3_600_000),
        dataCacheBytes: Math.round(checkedNumber('--data-cache-mib', o.dataCacheMib, 0, 1 << 20) * (1 << 20)),
        pageStoreBytes: parseSize('--page-store-size', o.pageStoreSize),
        routes: (o.route as string[]).map(parseRoute),
        price: checkedNumber('--price', o.price, 0, 1e9),
        maxLoad: o.maxLoad === undefined ? undefined : checkedNumber('--max-load', o.maxLoad, 0, 1e6),
        metrics: o.metrics === undefined ? undefined : parseListen(o.metrics, '--metrics'),
        tuning: { horizonS: checkedNumber('--policy-horizon', o.policyHorizon, 0, 1e6), minStayS: checkedNumber('--min-stay', o.minStay, 0, 1e6) },
      });
      let stopping = false;
      const stop = () => {
        if (stopping) return;
        stopping = true;
        agent.stop().catch(reportError).finally(() => process.exit());
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    }));
}
