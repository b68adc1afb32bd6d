// `pj agent`: runs the manager daemon of this host in the foreground.
import type { Command } from 'commander';
import { PjError, codes } from '../../common/errors.js';
import type { ExportInfo } from '../../manager/cluster-state.js';
import { runAgent } from '../../manager/agent.js';
import { DEFAULT_DATA_CACHE_BYTES } from '../../fs-layer/index.js';
import { parseExportSpec } from '../../manager/exports.js';
import { DEFAULT_PAGE_STORE_BYTES } from '../../migrator/index.js';
import { parseRoute } from '../../net-layer/index.js';
import { action, reportError } from '../output.js';

const collect = (v: string, prev: string[]) => [...prev, v];

function parseListen(s: string): { address: string; port: number } {
  const i = s.lastIndexOf(':');
  const port = Number(s.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new PjError(codes.USAGE, `--listen '${s}' must be ADDR:PORT`);
  return { address: s.slice(0, i), port };
}

function checkedNumber(flag: string, v: number, min: number, max: number): number {
  if (!Number.isFinite(v) || v < min || v > max) throw new PjError(codes.USAGE, `${flag} must be a number from ${min} to ${max}`);
  return v;
}

/** "512M", "4G", "1.5T" or a number of bytes. */
function parseSize(flag: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)i?B?$/i.exec(v.trim());
  if (!m) throw new PjError(codes.USAGE, `${flag} must be a size such as 512M or 4G`);
  return Math.round(Number(m[1]) * 1024 ** ' KMGT'.indexOf(m[2].toUpperCase() || ' '));
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
    .option('--export <name=path[:ro]>', 'offer a directory as /pj/<host>/<name> (repeatable)', collect, [])
    .option('--device <name=path>', 'offer a character device as /pj/<host>/<name> (repeatable)', collect, [])
    .option('--mount <dir>', 'where the /pj tree is mounted', '/pj')
    .option('--control-socket <path>', 'the CLI\'s socket', '/run/pj/agent.sock')
    .option('--attr-timeout <seconds>', 'how long the kernel trusts /pj names and attributes', parseFloat, 1)
    .option('--rpc-timeout <ms>', 'deadline of each /pj request to another host', (v) => parseInt(v, 10), 5000)
    .option('--data-cache-mib <n>', 'memory for remote file data kept by this agent (0: none)', parseFloat, DEFAULT_DATA_CACHE_BYTES / (1 << 20))
    .option('--route <target=host>', 'reach CIDR or NAME (db.internal, *.corp) from HOST; kept in etcd for the whole cluster (repeatable)', collect, [])
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
