// The memory the pager tests fill: page i of a task's memory holds the byte i % 251.
import { PAGE } from '../../mem-layer/page-scan.js';

/** Pages `pages` (indices) of the task's memory at `addr`: their addresses and contents. */
export function pattern(addr: number, pages: number[]): { addrs: BigUint64Array; data: Buffer } {
  const data = Buffer.alloc(pages.length * PAGE);
  pages.forEach((i, k) => data.fill(i % 251, k * PAGE, (k + 1) * PAGE));
  return { addrs: BigUint64Array.from(pages.map((i) => BigInt(addr + i * PAGE))), data };
}
