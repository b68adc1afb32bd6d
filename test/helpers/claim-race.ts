// One contender in a race to create the same job-table keys in etcd. Run the
// same command on two hosts at once:  node claim-race.js ETCD_URL NAME COUNT START_MS
// Prints the keys this contender won and, once every key is taken, every owner.
import { ClusterState } from '../../manager/cluster-state.js';
import { silentLog } from '../../common/log.js';

const [url, name, countArg, startArg] = process.argv.slice(2);
const state = new ClusterState(url, silentLog);
await state.waitReady(5000);
await new Promise((r) => setTimeout(r, Math.max(0, Number(startArg) - Date.now())));
const ids = Array.from({ length: Number(countArg) }, (_, i) => `race-${i}`);
const won = (await Promise.all(ids.map(async (id) => ((await state.jobs.create(id, { owner: name })) ? id : null)))).filter(Boolean);
// Every key taken (by one contender or the other) is when the race is over.
const ownersNow = async () => Object.fromEntries(await Promise.all(ids.map(async (id) => [id, (await state.jobs.get<{ owner: string }>(id))?.value.owner])));
let owners = await ownersNow();
while (Object.values(owners).some((o) => o === undefined)) {
  await new Promise((r) => setTimeout(r, 50));
  owners = await ownersNow();
}
process.stdout.write(JSON.stringify({ name, won, owners }) + '\n');
await state.close();
