// etcdctl from the toolchain, run on the host or inside a pod's network namespace (`via`: the prefix
// t.nodes.podNetwork gives).
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { etcdBinDir, pins } from '../../local/toolchain.js';

const run = promisify(execFile);
const etcdctlBin = join(etcdBinDir(pins.ETCD36_VERSION), 'etcdctl');

export async function etcdctl(
  endpoints: string | string[],
  args: string[],
  opts: { via?: string[]; timeoutSec?: number } = {},
): Promise<string> {
  const ep = Array.isArray(endpoints) ? endpoints.join(',') : endpoints;
  const argv = [
    etcdctlBin,
    `--endpoints=${ep}`,
    `--dial-timeout=${opts.timeoutSec ?? 3}s`,
    `--command-timeout=${opts.timeoutSec ?? 3}s`,
    ...args,
  ];
  const [cmd, ...rest] = [...(opts.via ?? []), ...argv];
  const { stdout } = await run(cmd, rest, { env: { ...process.env, ETCDCTL_API: '3' } });
  return stdout.trim();
}

export const clientUrl = (ip: string) => `http://${ip}:2379`;
