// Sizes as people write and read them: "512M", "4G" in options; 1.5M, 20K in tables.
import { PjError, codes } from '../common/errors.js';

/** "512M", "4G", "1.5T" or a number of bytes. */
export function parseSize(flag: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)i?B?$/i.exec(v.trim());
  if (!m) throw new PjError(codes.USAGE, `${flag} must be a size such as 512M or 4G`);
  return Math.round(Number(m[1]) * 1024 ** ' KMGT'.indexOf(m[2].toUpperCase() || ' '));
}

/** Bytes in the fewest characters: 812, 20.0K, 1.5M, 2.0G. */
export const human = (n: number): string =>
  n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)}G` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)}M` : n >= 1024 ? `${(n / 1024).toFixed(1)}K` : String(Math.round(n));
