// The mesh's frame decoder: frames split anywhere are reassembled; oversized
// lengths and unknown kinds are protocol errors.
import t from 'tap';
import { FrameDecoder, FrameKind, MAX_PAYLOAD, frameHeader } from '../../manager/mesh/frame.js';

const frame = (kind: number, id: number, payload: Buffer) => Buffer.concat([frameHeader(kind as FrameKind, id, payload.length), payload]);

t.test('reassembles frames split at every byte boundary', async (t) => {
  const wire = Buffer.concat([frame(FrameKind.Request, 7, Buffer.from('hello')), frame(FrameKind.StreamEnd, 9, Buffer.alloc(0)), frame(FrameKind.StreamData, 9, Buffer.alloc(300, 1))]);
  for (let cut = 0; cut <= wire.length; cut++) {
    const d = new FrameDecoder();
    const got = [...d.push(wire.subarray(0, cut)), ...d.push(wire.subarray(cut))];
    const data = got.filter((f) => f.kind === FrameKind.StreamData);
    t.same(got.filter((f) => f.kind !== FrameKind.StreamData).map((f) => [f.kind, f.id, f.payload.length]), [[FrameKind.Request, 7, 5], [FrameKind.StreamEnd, 9, 0]], `cut at ${cut}`);
    t.ok(data.every((f) => f.id === 9), 'data pieces keep their id');
    t.ok(Buffer.concat(data.map((f) => f.payload)).equals(Buffer.alloc(300, 1)), 'data pieces add up to the payload');
    t.ok(d.atFrameBoundary);
  }
});

t.test('keeps a partial frame pending; passes stream data through as it arrives', async (t) => {
  const d = new FrameDecoder();
  t.same(d.push(frame(FrameKind.Response, 1, Buffer.alloc(100)).subarray(0, 50)), []);
  t.notOk(d.atFrameBoundary);
  const s = new FrameDecoder();
  const pieces = s.push(frame(FrameKind.StreamData, 3, Buffer.alloc(100, 2)).subarray(0, 59));
  t.same(pieces.map((f) => [f.kind, f.id, f.payload.length]), [[FrameKind.StreamData, 3, 50]]);
  t.notOk(s.atFrameBoundary, 'the rest of the data frame is still due');
});

t.test('rejects an oversized length before buffering it', async (t) => {
  const h = frameHeader(FrameKind.Request, 1, 0);
  h.writeUInt32BE(MAX_PAYLOAD + 1, 0);
  t.throws(() => new FrameDecoder().push(h), { code: 'PJ_ERR_PROTOCOL', message: /exceeds the 16777216-byte limit/ });
});

t.test('rejects an unknown kind', async (t) => {
  t.throws(() => new FrameDecoder().push(frame(0x42, 1, Buffer.alloc(0))), { code: 'PJ_ERR_PROTOCOL', message: 'unknown frame kind 66' });
});
