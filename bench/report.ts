// Shared by every benchmark: percentiles, a printed table of figure vs
// baseline, and the JSON result (last line of stdout, and a file in bench/results/).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../common/repo-root.js';

export function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

export interface Row { figure: string; ours: number; baseline: number; unit: string; ratio: number; goal?: string }

export function printRows(title: string, rows: Row[]): void {
  process.stdout.write(`\n${title}\n`);
  const cells = [['figure', 'ours', 'baseline', 'ratio', 'goal'], ...rows.map((r) => [r.figure, `${r.ours.toFixed(3)} ${r.unit}`, `${r.baseline.toFixed(3)} ${r.unit}`, `${r.ratio.toFixed(2)}x`, r.goal ?? ''])];
  const w = cells[0].map((_, i) => Math.max(...cells.map((c) => c[i].length)));
  for (const c of cells) process.stdout.write(c.map((x, i) => x.padEnd(w[i])).join('  ').trimEnd() + '\n');
}

export function writeResult(name: string, result: object, json: boolean): string {
  const dir = join(repoRoot(), 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  if (json) process.stdout.write(JSON.stringify(result) + '\n');
  else process.stdout.write(`\nresult written to ${file}\n`);
  return file;
}
