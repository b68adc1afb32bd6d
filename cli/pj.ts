#!/usr/bin/env node
// `pj`: the PicoJump command line. It parses, asks the manager, prints.
import { Command } from 'commander';
import { VERSION } from '../common/version.js';
import { register as agent } from './commands/agent.js';
import { register as cache } from './commands/cache.js';
import { register as cluster } from './commands/cluster.js';
import { register as doctor } from './commands/doctor.js';
import { register as host } from './commands/host.js';
import { register as hosts } from './commands/hosts.js';
import { register as ledger } from './commands/ledger.js';
import { register as kill } from './commands/kill.js';
import { register as logs } from './commands/logs.js';
import { register as mv } from './commands/mv.js';
import { register as ping } from './commands/ping.js';
import { register as policy } from './commands/policy.js';
import { register as ps } from './commands/ps.js';
import { register as routes } from './commands/routes.js';
import { register as run } from './commands/run.js';
import { register as status } from './commands/status.js';
import { register as top } from './commands/top.js';
import { reportError } from './output.js';

const program = new Command('pj')
  .description('PicoJump: run legacy programs across a cluster')
  .version(VERSION, '-V, --version')
  .showHelpAfterError()
  .exitOverride();
for (const reg of [agent, cluster, hosts, host, status, run, ps, top, policy, logs, kill, mv, routes, cache, ping, ledger, doctor]) reg(program);

program.parseAsync(process.argv).catch((e: { code?: string; exitCode?: number }) => {
  if (typeof e.code === 'string' && e.code.startsWith('commander.')) {
    process.exitCode = e.exitCode ?? 2; // commander already printed help or the usage error
    return;
  }
  reportError(e);
});
