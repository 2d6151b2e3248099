// A stack's running nodes as the host sees them: their layout and addresses, each kubelet's process, each
// containerd. What faults need, from the process that started the nodes (RealNodes extends it) or from any
// other (`NodeHost.attach`, for `npm run nodes`).
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pins, toolsDir } from '../toolchain.js';
import { RealAddresses, RealNodesLayout, setFrozen, type RealNet } from './host.js';

const run = promisify(execFile);
/** containerd's client (built with containerd by install.sh). */
export const ctrBin = join(toolsDir, `containerd-v${pins.CONTAINERD_VERSION}`, 'ctr');

export class NodeHost {
  addr!: RealAddresses;

  constructor(readonly layout: RealNodesLayout) {}

  /** The nodes a running stack (its state folder) started. */
  static attach(stackDir: string): NodeHost {
    const dir = join(stackDir, 'nodes');
    const probe = new RealNodesLayout(dir, 0);
    if (!existsSync(probe.netFile)) throw new Error(`no real nodes were started from ${stackDir}`);
    let count = 0;
    while (existsSync(probe.nodeDir(count + 1))) count++;
    const host = new NodeHost(new RealNodesLayout(dir, count));
    host.addr = new RealAddresses((JSON.parse(readFileSync(probe.netFile, 'utf8')) as RealNet).octet);
    return host;
  }

  nodeNames(): string[] {
    return this.layout.nodeNames();
  }

  nodeIndex(node: string): number {
    const n = this.nodeNames().indexOf(node) + 1;
    if (!n) throw new Error(`no real node named ${node}`);
    return n;
  }

  /** The node's kubelet: the process started with the node's own config file. */
  kubeletPid(node: string): number {
    const config = `--config=${join(this.layout.nodeDir(this.nodeIndex(node)), 'kubelet.yaml')}`;
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        if (readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').includes(config)) return Number(d);
      } catch {
        /* gone meanwhile */
      }
    }
    throw new Error(`the kubelet of ${node} is not running`);
  }

  /** Fault: the node's pods freeze (cgroup freezer) and its kubelet stops (SIGSTOP): NotReady, unreachable. */
  stopNode(node: string): void {
    setFrozen(this.layout, this.nodeIndex(node), true);
    process.kill(this.kubeletPid(node), 'SIGSTOP');
  }
  startNode(node: string): void {
    setFrozen(this.layout, this.nodeIndex(node), false);
    process.kill(this.kubeletPid(node), 'SIGCONT');
  }

  ctr(node: string, ...args: string[]) {
    return run(ctrBin, ['--address', this.layout.socket(this.nodeIndex(node)), '-n', 'k8s.io', ...args]);
  }
}
