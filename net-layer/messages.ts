// The messages between a job's init and this host's manager, as
// native/init/net-msg.h lays them out: a 112-byte header, then a payload.
export const RELAY_PORT = 7777;
export const DNS_PORT = 7753;
/** SIGRTMIN + 4: tells a job's init to ask this host's manager for its links again. */
export const SIG_REATTACH = 38;

export const Msg = {
  Open: 1, Attach: 2, Dns: 3, Detached: 4, Closed: 5, Bytes: 6, Accepted: 7, Hello: 8,
  Opened: 11, DnsReply: 12, Detach: 13, Inbound: 14,
} as const;

/** The link is a framed tunnel to the holder (not the outside socket itself). */
export const LINK_TUNNEL = 1;

export interface NetMsg {
  type: number;
  stream: number;
  err: number;
  flags: number;
  /** Dotted IPv4. */
  addr: string;
  port: number;
  key: bigint;
  bytesOut: bigint;
  bytesIn: bigint;
  holder: string;
  payload: Buffer;
}

const HEADER = 112;

export function decode(b: Buffer): NetMsg | undefined {
  if (b.length < HEADER) return undefined;
  const holder = b.subarray(48, HEADER);
  const end = holder.indexOf(0);
  return {
    type: b.readUInt32LE(0), stream: b.readUInt32LE(4), err: b.readInt32LE(8), flags: b.readUInt32LE(12),
    addr: [...b.subarray(16, 20)].join('.'), port: b.readUInt16LE(20),
    key: b.readBigUInt64LE(24), bytesOut: b.readBigUInt64LE(32), bytesIn: b.readBigUInt64LE(40),
    holder: holder.subarray(0, end < 0 ? 64 : end).toString('utf8'), payload: b.subarray(HEADER),
  };
}

export function encode(m: Partial<NetMsg> & { type: number }): Buffer {
  const b = Buffer.alloc(HEADER + (m.payload?.length ?? 0));
  b.writeUInt32LE(m.type, 0);
  b.writeUInt32LE(m.stream ?? 0, 4);
  b.writeInt32LE(m.err ?? 0, 8);
  b.writeUInt32LE(m.flags ?? 0, 12);
  (m.addr ?? '0.0.0.0').split('.').forEach((o, i) => b.writeUInt8(Number(o) & 255, 16 + i));
  b.writeUInt16LE(m.port ?? 0, 20);
  b.writeBigUInt64LE(m.key ?? 0n, 24);
  b.writeBigUInt64LE(m.bytesOut ?? 0n, 32);
  b.writeBigUInt64LE(m.bytesIn ?? 0n, 40);
  b.write(m.holder ?? '', 48, 63, 'utf8');
  m.payload?.copy(b, HEADER);
  return b;
}
