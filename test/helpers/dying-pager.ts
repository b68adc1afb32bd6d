// A pager in a process of its own, with its keeper, for the test that kills it
// (test/mem/pager.test.ts): listens on SOCKET with a keeper at KEEPER; reads a
// line {pid, addr, pages} and installs pages [0, pages) of the pattern, printing
// "installed" once they are; prints "dropped" once the task dropped pages (the
// keeper has been told). The test then ends it with SIGKILL, as an agent dies.
import { createInterface } from 'node:readline';
import { silentLog } from '../../common/log.js';
import { Pager } from '../../mem-layer/pager.js';
import { startPagerKeeper } from '../../mem-layer/pager-keeper.js';
import { pattern } from './page-pattern.js';

const [socket, keeper] = process.argv.slice(2);
startPagerKeeper(keeper, silentLog);
const pager = Pager.listen(socket, keeper);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const { pid, addr, pages } = JSON.parse((await lines.next()).value) as { pid: number; addr: number; pages: number };
const p = pattern(addr, Array.from({ length: pages }, (_, i) => i));
pager.supply(pid, p.addrs, p.data);
const until = async (done: () => boolean) => { while (!done()) await new Promise((r) => setTimeout(r, 10)); };
await until(() => pager.stats().installed >= pages);
console.log('installed');
await until(() => pager.stats().drops > 0);
console.log('dropped');
await new Promise(() => {});
