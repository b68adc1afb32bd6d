// Counters and histograms with labels, written in Prometheus's text format
// (version 0.0.4). The layers count into one registry per manager; the
// manager serves it on --metrics ADDR:PORT.

type Labels = Record<string, string>;

const key = (labels: Labels): string => JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)));
const escape = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const labelText = (labels: Labels): string => {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escape(v)}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
};
const num = (n: number): string => (Number.isFinite(n) ? String(n) : n > 0 ? '+Inf' : '-Inf');

interface Metric { name: string; help: string; type: 'counter' | 'gauge' | 'histogram'; lines(): string[] }
type Values = Array<{ labels: Labels; value: number }>;

export class Counter implements Metric {
  readonly type = 'counter';
  #values = new Map<string, { labels: Labels; value: number }>();
  constructor(readonly name: string, readonly help: string) {}

  inc(labels: Labels = {}, by = 1): void {
    const k = key(labels);
    const v = this.#values.get(k);
    if (v) v.value += by;
    else this.#values.set(k, { labels, value: by });
  }

  lines(): string[] {
    return [...this.#values.values()].map((v) => `${this.name}${labelText(v.labels)} ${num(v.value)}`);
  }
}

export class Histogram implements Metric {
  readonly type = 'histogram';
  #series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(readonly name: string, readonly help: string, readonly bounds: number[]) {}

  observe(labels: Labels, value: number): void {
    const k = key(labels);
    let s = this.#series.get(k);
    if (!s) this.#series.set(k, (s = { labels, counts: this.bounds.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < this.bounds.length; i++) if (value <= this.bounds[i]) s.counts[i]++;
    s.sum += value;
    s.count++;
  }

  lines(): string[] {
    return [...this.#series.values()].flatMap((s) => [
      ...this.bounds.map((b, i) => `${this.name}_bucket${labelText({ ...s.labels, le: num(b) })} ${s.counts[i]}`),
      `${this.name}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${s.count}`,
      `${this.name}_sum${labelText(s.labels)} ${s.sum}`,
      `${this.name}_count${labelText(s.labels)} ${s.count}`,
    ]);
  }
}

/** Values read from elsewhere (the ledger, the page store) when the registry is read. */
class Collected implements Metric {
  constructor(readonly name: string, readonly help: string, readonly type: 'counter' | 'gauge', private readonly read: () => Values) {}

  lines(): string[] {
    return this.read().map((v) => `${this.name}${labelText(v.labels)} ${num(v.value)}`);
  }
}

/** Latency buckets from 50 µs to 10 s, in seconds. */
export const LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

export class Metrics {
  #metrics = new Map<string, Metric>();

  counter(name: string, help: string): Counter {
    return this.#get(name, () => new Counter(name, help)) as Counter;
  }

  histogram(name: string, help: string, bounds = LATENCY_BUCKETS): Histogram {
    return this.#get(name, () => new Histogram(name, help, bounds)) as Histogram;
  }

  /** A metric whose values `read` gives when the registry is read. */
  collect(name: string, help: string, type: 'counter' | 'gauge', read: () => Values): void {
    this.#metrics.set(name, new Collected(name, help, type, read));
  }

  #get(name: string, make: () => Metric): Metric {
    let m = this.#metrics.get(name);
    if (!m) this.#metrics.set(name, (m = make()));
    return m;
  }

  /** The registry in Prometheus's text format. */
  text(): string {
    return [...this.#metrics.values()].map((m) => [`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`, ...m.lines()].join('\n')).join('\n') + '\n';
  }
}
