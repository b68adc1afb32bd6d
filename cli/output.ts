// Printing for the CLI: aligned tables for people, JSON for programs, and
// errors as "CODE: message" with the exit code set (a stack only with PJ_DEBUG=1).
export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export function printTable(rows: Array<Record<string, unknown>>, columns: string[]): void {
  const cells = [columns.map((c) => c.toUpperCase()), ...rows.map((r) => columns.map((c) => String(r[c] ?? '-')))];
  const widths = columns.map((_, i) => Math.max(...cells.map((row) => row[i].length)));
  for (const row of cells) process.stdout.write(row.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd() + '\n');
}

export function reportError(err: unknown): void {
  const e = err as { code?: unknown; message?: string; stack?: string };
  const code = typeof e?.code === 'string' ? e.code : 'PJ_ERR_INTERNAL';
  process.stderr.write(`pj: ${code}: ${e?.message ?? String(err)}\n`);
  if (process.env.PJ_DEBUG === '1' && e?.stack) process.stderr.write(e.stack + '\n');
  process.exitCode = code === 'PJ_ERR_USAGE' ? 2 : 1;
}

/** Wraps a command's action so that every failure is reported the same way. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      reportError(e);
    }
  };
}
