// Structured logs: one JSON line per event, with host and op (and job where
// there is one). Agents log into their state dir; the CLI logs nothing.
import pino, { type Logger } from 'pino';

export type Log = Logger;

export function createLog(opts: { host: string; file?: string; level?: string }): Log {
  const destination = opts.file ? pino.destination({ dest: opts.file, mkdir: true, sync: false }) : pino.destination(2);
  return pino({ level: opts.level ?? process.env.PJ_LOG_LEVEL ?? 'info', base: { host: opts.host } }, destination);
}

/** A logger that drops everything (library use without an agent). */
export const silentLog: Log = pino({ level: 'silent' });
