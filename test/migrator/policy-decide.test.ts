// The policy's decision on its own (migrator/policy.ts is pure): the cost model,
// payback, minimum stay and each policy, with figures chosen to sit on either
// side of each threshold.
import t from 'tap';
import { decide, DEFAULT_TUNING, type Candidate, type PolicyInput, type Traffic } from '../../migrator/policy.js';

const MiB = 2 ** 20;
const host = (name: string, o: Partial<Candidate> = {}): Candidate => ({ name, drained: false, price: 1, load: 0, maxLoad: 2, ...o });
/** A job on h1 with `traffic` (MiB/s by host), 100 MiB/s links with a 0.5 ms round trip, a 0.5 s downtime. */
function input(traffic: Record<string, number>, o: { job?: Partial<PolicyInput['job']>; hosts?: Candidate[]; moveMiB?: number } = {}): PolicyInput {
  return {
    self: 'h1',
    job: { policy: 'follow', budgetBytesPerS: MiB, cpu: 0.5, sinceMoveS: Infinity, ...o.job },
    traffic: new Map(Object.entries(traffic).map(([h, m]): [string, Traffic] => [h, { bytesPerS: m * MiB, opsPerS: 0 }])),
    hosts: o.hosts ?? [host('h1'), host('h2'), host('h3')],
    costs: () => ({ rttS: 0.0005, bytesPerS: 100 * MiB }),
    downtimeS: 0.5,
    moveBytes: () => (o.moveMiB ?? 10) * MiB,
    tuning: DEFAULT_TUNING,
  };
}

t.test('follow: to the host the traffic goes to, when the move pays back within the horizon', async (t) => {
  t.match(decide(input({ h2: 20 })), { outcome: 'move', to: 'h2', why: 'traffic there' }, '20 MiB/s to h2: 0.2 s/s saved pays a 0.6 s move back in 3 s');
  t.match(decide(input({ h2: 20, h3: 5 })), { outcome: 'move', to: 'h2' }, 'the host that saves the most');
  t.match(decide(input({ h2: 1 }, { moveMiB: 1000 })), { outcome: 'stay', why: 'does not pay back' }, '1 MiB/s does not pay back moving 1000 MiB within 30 s');
  t.match(decide(input({ h2: 0.1 })), { outcome: 'stay', why: 'traffic here' }, 'noise is no reason to move');
  t.match(decide(input({ h1: 10, h2: 10 })), { outcome: 'stay', why: 'traffic here' }, 'traffic split evenly with this host: staying costs as much as moving');
  t.match(decide(input({ h2: 20 }, { job: { sinceMoveS: 3 } })), { outcome: 'stay', why: 'minimum stay' }, 'not within 10 s of the last move');
});

t.test('pin, drain, cheap, balance', async (t) => {
  t.match(decide(input({ h2: 50 }, { job: { policy: 'pin' } })), { outcome: 'stay', why: 'pinned' }, 'pin never moves');
  const drained = [host('h1', { drained: true }), host('h2'), host('h3', { drained: true })];
  t.match(decide(input({}, { hosts: drained, job: { sinceMoveS: 1 } })), { outcome: 'move', to: 'h2', why: 'host drained' }, 'a drained host sends its job to the one host not drained, minimum stay or not');
  t.match(decide(input({ h3: 50 }, { hosts: drained.map((h) => ({ ...h, drained: h.name === 'h3' })) })), { outcome: 'stay' }, 'no move to a drained host');
  const priced = [host('h1', { price: 3 }), host('h2', { price: 2 }), host('h3', { price: 1 })];
  t.match(decide(input({}, { hosts: priced, job: { policy: 'cheap' } })), { outcome: 'move', to: 'h3', why: 'cheaper host' }, 'cheap: an idle job to the cheapest');
  t.match(decide(input({ h1: 5 }, { hosts: priced, job: { policy: 'cheap' } })), { outcome: 'stay', why: 'cheapest within budget' }, 'not when that adds 5 MiB/s of remote traffic to a 1 MiB/s budget');
  t.match(decide(input({ h1: 5 }, { hosts: priced, job: { policy: 'cheap', budgetBytesPerS: 8 * MiB } })), { outcome: 'move', to: 'h3' }, 'unless the budget allows it');
  const loaded = [host('h1', { load: 2.5 }), host('h2', { load: 1.8 }), host('h3', { load: 0.2 })];
  t.match(decide(input({}, { hosts: loaded, job: { policy: 'balance' } })), { outcome: 'move', to: 'h3', why: 'host loaded' }, 'balance: a loaded host sheds to the host that can take the job');
  t.match(decide(input({}, { hosts: loaded })), { outcome: 'stay' }, 'follow does not weigh load');
  t.match(decide(input({ h2: 20 }, { hosts: [host('h1'), host('h2', { load: 1.9 })], job: { policy: 'balance' } })), { outcome: 'stay' }, 'balance does not follow traffic onto a host it would overload');
});
