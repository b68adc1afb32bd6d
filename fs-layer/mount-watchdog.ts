// Watches this host's /pj and mends it. A mount that no longer answers is
// found three ways: its connection ends (aborted, or unmounted by someone
// else: the reader sees ENODEV), a stat of it fails (ENOTCONN), or a stat of it
// does not return within STUCK_MS (a request nobody answers; the stat of the
// mount's root is answered by this agent alone, so it is never slow for a
// good reason). A stuck connection is aborted (its waiting callers get
// ENOTCONN and go on); then /pj is mounted afresh. The state is what pj hosts,
// pj doctor and the metrics report until then.
import { stat } from 'node:fs/promises';
import type { Log } from '../common/log.js';

const PROBE_MS = 1000;
const STUCK_MS = 10_000;
const REMOUNT_RETRY_MS = 2000;

export type MountState = 'ok' | 'down' | 'stuck' | 'remounting';
export interface MountHealth { state: MountState; since: string; detail?: string; remounts: number }

export interface Mounted {
  /** Resolves when the connection ends by itself (not by our unmount). */
  readonly lost: Promise<number>;
  abort(): Promise<void>;
}

export class MountWatchdog {
  #health: MountHealth = { state: 'ok', since: new Date().toISOString(), remounts: 0 };
  #timer: NodeJS.Timeout | undefined;
  #probeStarted = 0;
  #session: Mounted | undefined;
  #stopped = false;

  constructor(private readonly o: { mount: string; log: Log; remount: () => Promise<Mounted> }) {}

  get health(): MountHealth { return { ...this.#health }; }

  /** Watches `session`, the connection just mounted. */
  watch(session: Mounted): void {
    this.#session = session;
    void session.lost.then((errno) => {
      if (this.#session === session) this.#broken('down', `the FUSE connection ended (errno ${errno})`);
    });
    this.#timer ??= setInterval(() => this.#probe(), PROBE_MS);
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
  }

  #set(state: MountState, detail?: string): void {
    if (state === this.#health.state && detail === this.#health.detail) return;
    this.#health = { state, since: new Date().toISOString(), ...(detail ? { detail } : {}), remounts: this.#health.remounts };
  }

  #probe(): void {
    if (this.#health.state === 'remounting' || this.#health.state === 'down') return;
    if (this.#probeStarted) {
      if (Date.now() - this.#probeStarted > STUCK_MS && this.#health.state !== 'stuck') {
        this.#broken('stuck', `a stat of ${this.o.mount} has not returned for ${STUCK_MS / 1000} s`);
      }
      return;
    }
    this.#probeStarted = Date.now();
    stat(this.o.mount).then(
      () => { if (this.#health.state === 'ok') this.#set('ok'); },
      (e: NodeJS.ErrnoException) => { if (e.code === 'ENOTCONN' && this.#health.state === 'ok') this.#broken('down', `${this.o.mount}: ENOTCONN`); },
    ).finally(() => (this.#probeStarted = 0));
  }

  /** The mount is broken: abort what is left of it, then mount again until that works. */
  #broken(state: 'down' | 'stuck', detail: string): void {
    if (this.#stopped || this.#health.state === 'remounting') return;
    this.#set(state, detail);
    this.o.log.error({ op: 'fuse-health', state, detail }, '/pj does not answer: mounting it again');
    const old = this.#session;
    this.#session = undefined;
    void (async () => {
      if (state === 'stuck') await old?.abort().catch((e: Error) => this.o.log.warn({ op: 'fuse-health', err: e.message }, 'could not abort the stuck connection'));
      this.#set('remounting', detail);
      while (!this.#stopped) {
        try {
          const s = await this.o.remount();
          this.#health.remounts++;
          this.#set('ok');
          this.o.log.info({ op: 'fuse-health', remounts: this.#health.remounts }, '/pj mounted again');
          this.watch(s);
          return;
        } catch (e) {
          this.o.log.error({ op: 'fuse-health', err: (e as Error).message }, 'mounting /pj again failed; trying again');
          await new Promise((r) => setTimeout(r, REMOUNT_RETRY_MS));
        }
      }
    })();
  }
}
