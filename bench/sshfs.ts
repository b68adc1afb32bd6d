// The sshfs baseline of the fs benchmark: sshd inside one host of the
// simulated cluster (its own keys, nothing of the machine's), and an sshfs
// mount of its /srv/data inside another host.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, sleep, spawnDaemon } from '../common/run.js';
import { nsenterFor } from '../manager/sim-cluster/exec.js';

export interface SshfsMount { path: string; unmount(): Promise<void> }

export async function mountSshfs(dir: string, server: { name: string; address: string }, client: string): Promise<SshfsMount> {
  const ssh = join(dir, 'bench-ssh');
  mkdirSync(ssh, { recursive: true });
  mkdirSync('/run/sshd', { recursive: true });
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(ssh, 'host_key')]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(ssh, 'client_key')]);
  await run('cp', [join(ssh, 'client_key.pub'), join(ssh, 'authorized_keys')]);
  writeFileSync(join(ssh, 'sshd_config'), [
    `ListenAddress ${server.address}`, 'Port 22', `HostKey ${join(ssh, 'host_key')}`, `AuthorizedKeysFile ${join(ssh, 'authorized_keys')}`,
    'PermitRootLogin yes', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no', 'StrictModes no',
    `PidFile ${join(ssh, 'sshd.pid')}`, 'Subsystem sftp internal-sftp', '',
  ].join('\n'));
  const sshd = spawnDaemon('nsenter', [...nsenterFor(dir, server.name), '/usr/sbin/sshd', '-D', '-f', join(ssh, 'sshd_config')], join(ssh, 'sshd.log'));
  const path = '/mnt/pj-bench-sshfs';
  mkdirSync(path, { recursive: true });
  const inClient = (argv: string[]) => run('nsenter', [...nsenterFor(dir, client), ...argv], { allowFail: true });
  let mounted = false;
  for (let i = 0; i < 50 && !mounted; i++) {
    const r = await inClient(['sshfs', '-o', `IdentityFile=${join(ssh, 'client_key')},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,LogLevel=ERROR`,
      `root@${server.address}:/srv/data`, path]);
    mounted = r.code === 0;
    if (!mounted) await sleep(100);
  }
  if (!mounted) throw new Error(`sshfs could not mount ${server.name}:/srv/data (see ${join(ssh, 'sshd.log')})`);
  return {
    path,
    async unmount() {
      await inClient(['umount', path]);
      try { process.kill(sshd, 'SIGTERM'); } catch { /* gone */ }
    },
  };
}
