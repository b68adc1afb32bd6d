// What remote access and moves cost, as this host measures them: the round
// trip and the throughput to each peer (from the mesh calls the layers make
// anyway), and the downtime of the moves it made. The policy weighs a job's
// remote traffic and a move with these; until a figure is measured it uses a
// prior (a LAN's: 0.5 ms, 400 MiB/s, 0.5 s of downtime).
import type { FinishedCall } from '../manager/mesh/mesh.js';
import type { MoveResult } from './move-types.js';

const PRIOR_RTT_S = 0.0005;
const PRIOR_BYTES_PER_S = 400 * 2 ** 20;
const PRIOR_DOWNTIME_S = 0.5;
/** Calls that move less than this measure the round trip; calls that move more, the throughput. */
const SMALL_CALL_BYTES = 4096;
const BULK_CALL_BYTES = 64 * 1024;
/** Weight of a new sample in the moving averages. */
const ALPHA = 0.2;
/**
 * The round trip is the least of the last small calls: a small call queued behind bulk bytes on the
 * same connection measures those bytes, which the throughput already prices.
 */
const RTT_SAMPLES = 32;

const ewma = (old: number | undefined, sample: number): number => (old === undefined ? sample : old + ALPHA * (sample - old));

export interface PeerCosts { rttS: number; bytesPerS: number }

export class MoveCosts {
  #rttSamples = new Map<string, number[]>();
  #throughput = new Map<string, number>();
  #downtime: number | undefined;

  /** A mesh call this host made: its latency and size teach the round trip or the throughput to its host. */
  observeCall(c: FinishedCall): void {
    if (!c.ok) return;
    if (c.bytes < SMALL_CALL_BYTES) {
      const samples = this.#rttSamples.get(c.host) ?? [];
      samples.push(c.seconds);
      if (samples.length > RTT_SAMPLES) samples.shift();
      this.#rttSamples.set(c.host, samples);
    } else if (c.bytes >= BULK_CALL_BYTES) {
      // A bulk call takes a round trip plus its bytes at the link's rate.
      const transfer = Math.max(c.seconds - this.peer(c.host).rttS, c.seconds / 10);
      this.#throughput.set(c.host, ewma(this.#throughput.get(c.host), c.bytes / transfer));
    }
  }

  observeMove(r: MoveResult): void {
    this.#downtime = ewma(this.#downtime, r.downtime_ms / 1000);
  }

  /**
   * The costs of reaching `host` from here. Costs between two other hosts are not measured here: the
   * mean of what this host measured stands for them.
   */
  peer(host: string): PeerCosts {
    const rttOf = (samples: number[]) => Math.min(...samples);
    const own = this.#rttSamples.get(host);
    const rtt = own ? rttOf(own) : mean([...this.#rttSamples.values()].map(rttOf));
    const thr = this.#throughput.get(host) ?? mean([...this.#throughput.values()]);
    return { rttS: rtt ?? PRIOR_RTT_S, bytesPerS: thr ?? PRIOR_BYTES_PER_S };
  }

  downtimeS(): number {
    return this.#downtime ?? PRIOR_DOWNTIME_S;
  }
}

const mean = (xs: number[]): number | undefined => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined);
