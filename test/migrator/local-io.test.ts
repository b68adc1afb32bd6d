// The ledger's 'io' layer (migrator/local-io.ts), on the real TrafficLedger: a job's own I/O counters
// less what the fs and net layers counted is local I/O, recorded once; layers that count late, new
// processes and ended ones neither double nor lose bytes.
import t from 'tap';
import { TrafficLedger } from '../../migrator/ledger.js';
import { LocalIo } from '../../migrator/local-io.js';
import { ProcReader } from '../../migrator/proc-reader.js';

const procs = new ProcReader();
t.teardown(() => procs.close());
const JOB = 'pidns:1';
const fresh = () => {
  const ledger = new TrafficLedger(procs);
  return { ledger, io: new LocalIo('h1', ledger), local: () => ledger.bytes(JOB, ['io']) };
};

t.test('the first sample is the baseline; what the I/O grows by later is local', async (t) => {
  const { io, local } = fresh();
  io.sample(JOB, new Map([[10, 5000]]));
  t.equal(local(), 0, 'nothing before a second sample');
  io.sample(JOB, new Map([[10, 8000]]));
  t.equal(local(), 3000);
});

t.test('bytes the fs and net layers counted are not counted again', async (t) => {
  const { ledger, io, local } = fresh();
  io.sample(JOB, new Map([[10, 0]]));
  ledger.record(JOB, 'h2', 'fs', 1, 1000);
  ledger.record(JOB, 'h3', 'net', 0, 500);
  io.sample(JOB, new Map([[10, 4000]]));
  t.equal(local(), 2500, '4000 of I/O, 1500 of it remote');
});

t.test('a layer that counts late: its bytes are taken from what was recorded before, never below', async (t) => {
  const { ledger, io, local } = fresh();
  io.sample(JOB, new Map([[10, 0]]));
  io.sample(JOB, new Map([[10, 3000]])); // the net layer has not reported these yet
  t.equal(local(), 3000);
  ledger.record(JOB, 'h3', 'net', 0, 3000); // now it has
  io.sample(JOB, new Map([[10, 3000]]));
  t.equal(local(), 3000, 'nothing recorded again, nothing taken back');
  io.sample(JOB, new Map([[10, 5000]]));
  t.equal(local(), 3000, 'the next 2000 were the late 3000 already counted as local: not counted twice');
  io.sample(JOB, new Map([[10, 7000]]));
  t.equal(local(), 4000, 'over the stay: 7000 of I/O, 3000 remote, 4000 local');
});

t.test('a process that starts counts from zero; one that ends keeps what it did', async (t) => {
  const { io, local } = fresh();
  io.sample(JOB, new Map([[10, 100]]));
  io.sample(JOB, new Map([[10, 600], [11, 300]]));
  t.equal(local(), 800, '500 by the first, 300 by the new one');
  io.sample(JOB, new Map([[11, 400]]));
  t.equal(local(), 900, 'the first ended: its bytes stay counted, the second added 100');
});

t.test('a job no longer sampled is forgotten: back later, it starts from a new baseline', async (t) => {
  const { io, local } = fresh();
  io.sample(JOB, new Map([[10, 0]]));
  io.sample(JOB, new Map([[10, 1000]]));
  io.keepOnly(new Set());
  io.sample(JOB, new Map([[20, 50_000]]));
  t.equal(local(), 1000, 'its first sample after returning is a baseline');
  io.sample(JOB, new Map([[20, 51_000]]));
  t.equal(local(), 2000);
});
