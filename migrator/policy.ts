// Where a job should run: the policy's decision for one job, from its traffic
// per host (the ledger), the hosts (up, drained, price, load) and the measured
// costs. Staying costs the job's remote traffic, in seconds of waiting per
// second: bytes over the link's throughput plus one round trip per operation.
// A move costs the pages the target's store lacks over the throughput, plus the
// downtime; it is made when what it saves pays it back within the horizon, and
// not again before the minimum stay is over (a job whose traffic alternates
// does not flap). Pure: the policy loop (policy-loop.ts) gathers the inputs.
import type { Rate } from './ledger.js';
import type { PeerCosts } from './move-costs.js';

export const POLICIES = ['follow', 'pin', 'balance', 'cheap'] as const;
export type Policy = (typeof POLICIES)[number];

/** A move must save at least this (seconds of waiting per second) to be worth weighing: noise is not a reason to move. */
const MIN_GAIN = 0.005;
/** CPUs by which a measured load may pass a host's limit: one busy loop measures 0.98 to 1.03 CPUs. */
export const LOAD_SLACK = 0.1;

export interface PolicyTuning {
  /** A move must pay back within this many seconds. */
  horizonS: number;
  /** No move sooner than this after the last one. */
  minStayS: number;
}
export const DEFAULT_TUNING: PolicyTuning = { horizonS: 30, minStayS: 10 };

/** A job's traffic with one host, per second (as the ledger gives it). */
export type Traffic = Rate;

export interface Candidate {
  name: string;
  drained: boolean;
  price: number;
  /** CPUs busy with its jobs, and where it starts to shed them. */
  load: number;
  maxLoad: number;
}

export interface PolicyInput {
  self: string;
  job: { policy: Policy; budgetBytesPerS: number; cpu: number; sinceMoveS: number };
  /** The job's traffic by host it goes to (this host included). */
  traffic: Map<string, Traffic>;
  /** The hosts that are up, this one included. */
  hosts: Candidate[];
  costs: (host: string) => PeerCosts;
  downtimeS: number;
  /** Bytes a move to `host` would carry (the job's memory that host's store lacks). */
  moveBytes: (host: string) => number;
  tuning: PolicyTuning;
}

export interface Decision {
  outcome: 'move' | 'stay';
  to?: string;
  /** Why, in a few words (the same words for the same reason: metrics count by it). */
  why: string;
  /** Why, with the figures. */
  detail: string;
}

/** Seconds per second the job would spend waiting for remote traffic if it ran on `at`. */
export function remoteCost(at: string, traffic: Map<string, Traffic>, costs: (host: string) => PeerCosts): number {
  let s = 0;
  for (const [host, t] of traffic) {
    if (host === at) continue;
    const c = costs(host);
    s += t.bytesPerS / c.bytesPerS + t.opsPerS * c.rttS;
  }
  return s;
}

const remoteBytes = (at: string, traffic: Map<string, Traffic>): number =>
  [...traffic].reduce((n, [h, t]) => (h === at ? n : n + t.bytesPerS), 0);

const ms = (s: number) => `${(s * 1000).toFixed(1)} ms/s`;
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const stay = (why: string, detail = why): Decision => ({ outcome: 'stay', why, detail });

export function decide(i: PolicyInput): Decision {
  const { self, job, traffic } = i;
  const here = i.hosts.find((h) => h.name === self);
  const others = i.hosts.filter((h) => h.name !== self && !h.drained);
  const costHere = remoteCost(self, traffic, i.costs);
  const moveCost = (to: string) => i.moveBytes(to) / i.costs(to).bytesPerS + i.downtimeS;

  if (job.policy === 'pin') return stay('pinned', here?.drained ? 'pinned: stays although its host is drained' : 'pinned');
  if (here?.drained) {
    if (!others.length) return stay('no host to drain to', 'its host is drained, but no other host is up and not drained');
    const best = job.policy === 'cheap'
      ? [...others].sort((a, b) => a.price - b.price || remoteCost(a.name, traffic, i.costs) - remoteCost(b.name, traffic, i.costs))[0]
      : [...others].sort((a, b) => remoteCost(a.name, traffic, i.costs) - remoteCost(b.name, traffic, i.costs) || a.load - b.load)[0];
    return { outcome: 'move', to: best.name, why: 'host drained', detail: `host drained: to ${best.name} (remote traffic there ${ms(remoteCost(best.name, traffic, i.costs))})` };
  }
  if (job.sinceMoveS < i.tuning.minStayS) return stay('minimum stay', `minimum stay: moved ${job.sinceMoveS.toFixed(1)} s ago (< ${i.tuning.minStayS} s)`);

  if (job.policy === 'cheap') {
    const price = here?.price ?? Infinity;
    const addedBudget = (h: Candidate) => remoteBytes(h.name, traffic) - remoteBytes(self, traffic) <= job.budgetBytesPerS;
    const cheaper = others.filter((h) => h.price < price && addedBudget(h)).sort((a, b) => a.price - b.price);
    if (!cheaper.length) return stay('cheapest within budget', `no cheaper host keeps its remote traffic within budget (${mib(job.budgetBytesPerS)}/s; here ${price}/h)`);
    const to = cheaper[0];
    return { outcome: 'move', to: to.name, why: 'cheaper host', detail: `cheaper host: ${to.name} at ${to.price}/h (here ${price}/h), adds ${mib(Math.max(0, remoteBytes(to.name, traffic) - remoteBytes(self, traffic)))}/s remote` };
  }

  // balance: a loaded host sheds the job to the least loaded host that costs it no more remote traffic.
  const fits = (h: Candidate) => job.policy !== 'balance' || h.load + job.cpu <= h.maxLoad + LOAD_SLACK;
  if (job.policy === 'balance' && here && here.load > here.maxLoad + LOAD_SLACK) {
    const lighter = others.filter((h) => fits(h) && remoteCost(h.name, traffic, i.costs) <= costHere + MIN_GAIN).sort((a, b) => a.load - b.load);
    if (lighter.length) {
      const to = lighter[0];
      return { outcome: 'move', to: to.name, why: 'host loaded', detail: `host loaded: ${here.load.toFixed(2)} CPUs > ${here.maxLoad}; ${to.name} has ${to.load.toFixed(2)}, job uses ${job.cpu.toFixed(2)}` };
    }
  }

  // follow (and balance within the load limits): the host that saves the most, if the saving pays the move back.
  let best: { to: string; gain: number; cost: number; net: number } | undefined;
  for (const h of others.filter(fits)) {
    const gain = costHere - remoteCost(h.name, traffic, i.costs);
    if (gain < MIN_GAIN) continue;
    const cost = moveCost(h.name);
    const net = gain * i.tuning.horizonS - cost;
    if (!best || net > best.net) best = { to: h.name, gain, cost, net };
  }
  if (!best) return stay('traffic here', `no host saves remote traffic: here ${ms(costHere)}, ${others.filter(fits).map((h) => `${h.name} ${ms(remoteCost(h.name, traffic, i.costs))}`).join(', ')}`);
  const payback = best.cost / best.gain;
  if (best.net <= 0) return stay('does not pay back', `${best.to} would save ${ms(best.gain)}, paying back a ${best.cost.toFixed(2)} s move in ${payback.toFixed(0)} s > ${i.tuning.horizonS} s`);
  return { outcome: 'move', to: best.to, why: 'traffic there', detail: `traffic there: ${best.to} saves ${ms(best.gain)} of ${ms(costHere)}; the move (${mib(i.moveBytes(best.to))}, ~${best.cost.toFixed(2)} s) pays back in ${payback.toFixed(1)} s` };
}
