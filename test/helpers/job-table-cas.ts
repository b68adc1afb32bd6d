// Compare-and-swap on the job table against a real etcd, as one manager sees it:
//   node job-table-cas.js ETCD_URL
// Prints what each transaction answered, as one JSON line.
import { ClusterState } from '../../manager/cluster-state.js';
import { silentLog } from '../../common/log.js';

const state = new ClusterState(process.argv[2], silentLog);
await state.waitReady(5000);
const jobs = state.jobs;
const id = `cas-${process.pid}`;
const created = await jobs.create(id, { host: 'h1', moves: 0 });
const createdAgain = await jobs.create(id, { host: 'h9', moves: 0 });
const v1 = (await jobs.get<{ host: string; moves: number }>(id))!;
const moved = await jobs.compareAndSwap(id, v1.modRevision, { host: 'h2', moves: 1 });
const staleMove = await jobs.compareAndSwap(id, v1.modRevision, { host: 'h3', moves: 1 });
const v2 = (await jobs.get<{ host: string; moves: number }>(id))!;
const listed = (await jobs.list<{ host: string }>()).filter((j) => j.id === id).map((j) => j.value.host);
const staleDelete = await jobs.compareAndDelete(id, v1.modRevision);
const deleted = await jobs.compareAndDelete(id, v2.modRevision);
const gone = (await jobs.get(id)) === undefined;
process.stdout.write(JSON.stringify({ created, createdAgain, moved, staleMove, now: v2.value, listed, staleDelete, deleted, gone }) + '\n');
await state.close();
