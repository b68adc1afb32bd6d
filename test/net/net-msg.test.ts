// The messages between a job's init and its manager are written twice, in
// native/init/net-msg.h (the relay, C) and net-layer/messages.ts: a C program
// built from the header reads what messages.ts encodes and answers with a
// message of its own, which messages.ts decodes. Types and ports are compared too.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../../common/repo-root.js';
import { DNS_PORT, LINK_TUNNEL, Msg, RELAY_PORT, SIG_REATTACH, decode, encode } from '../../net-layer/messages.js';

const dir = mkdtempSync(join(tmpdir(), 'pj-net-msg-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const bin = join(dir, 'net-msg-echo');
const cc = spawnSync('gcc', ['-Wall', '-o', bin, join(repoRoot(), 'test', 'helpers', 'net-msg-echo.c')], { encoding: 'utf8' });
t.equal(cc.status, 0, `built with the header's layout asserted ${cc.stderr}`);

const sent = { type: Msg.Opened, stream: 7, err: -13, flags: LINK_TUNNEL, addr: '10.77.0.3', port: 6379, key: 1n << 40n, bytesOut: 123456789n, bytesIn: 42n, holder: 'h2' };
const r = spawnSync(bin, [], { input: encode(sent) });
t.equal(r.status, 0, 'the C side read one whole message and wrote one');
const seen = JSON.parse(r.stderr.toString());
t.same({ ...seen, types: undefined, tunnel: undefined, ports: undefined }, { ...sent, key: String(sent.key), bytesOut: String(sent.bytesOut), bytesIn: String(sent.bytesIn), types: undefined, tunnel: undefined, ports: undefined },
  'every field messages.ts wrote is where the C struct reads it');
t.same(seen.types, [Msg.Open, Msg.Attach, Msg.Dns, Msg.Detached, Msg.Closed, Msg.Bytes, Msg.Accepted, Msg.Hello, Msg.Opened, Msg.DnsReply, Msg.Detach, Msg.Inbound], 'the message types agree');
t.same([seen.tunnel, ...seen.ports], [LINK_TUNNEL, RELAY_PORT, DNS_PORT, SIG_REATTACH], 'the flag, ports and signal agree');

const back = decode(r.stdout)!;
t.same({ ...back, payload: undefined }, { type: sent.type + 1, stream: 8, err: -14, flags: LINK_TUNNEL + 1, addr: '10.77.0.4', port: 6380, key: sent.key + 1n, bytesOut: sent.bytesOut + 1n, bytesIn: 43n, holder: 'h2+', payload: undefined },
  'every field the C struct wrote is where messages.ts reads it');
