// Faults and pod inspection on real nodes, one small API for tests (and `npm run nodes` for people): crash a
// container (SIGKILL its process), restart a pod's sandbox, cut a pod's network inside its network namespace,
// cut only the host's path to a pod, stop/start a node.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import type { NodeHost } from './node-host.js';

const run = promisify(execFile);

/** A pod on one of the stack's real nodes. */
export interface NodePod {
  namespace: string;
  name: string;
  uid?: string;
  node: string;
  ip?: string;
  /** The kubelet's log folder for the pod (one folder per container). */
  logDir: string;
}

export class NodeFaults {
  private readonly core: CoreV1Api;
  constructor(
    readonly nodes: NodeHost,
    kc: KubeConfig,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
  }

  private async read(namespace: string, name: string): Promise<V1Pod> {
    const p = await this.core.readNamespacedPod({ namespace, name });
    if (!p.spec?.nodeName || !this.nodes.nodeNames().includes(p.spec.nodeName))
      throw new Error(`pod ${namespace}/${name} is not on a real node of this stack`);
    return p;
  }

  /** The container's main process on the host (containerd's task pid). */
  private async pidOf(p: V1Pod, container?: string): Promise<number> {
    const st = (p.status?.containerStatuses ?? []).find((c) => !container || c.name === container);
    const id = st?.containerID?.replace(/^containerd:\/\//, '');
    if (!id) throw new Error(`pod ${p.metadata?.name}: container ${container ?? '(first)'} is not running`);
    const { stdout } = await this.nodes.ctr(p.spec!.nodeName!, 'tasks', 'ls');
    const line = stdout.split('\n').find((l) => l.startsWith(id));
    const pid = Number(line?.split(/\s+/)[1]);
    if (!pid) throw new Error(`pod ${p.metadata?.name}: no task for container ${id}`);
    return pid;
  }

  private logDir(p: V1Pod): string {
    const n = this.nodes.nodeIndex(p.spec!.nodeName!);
    return join(
      this.nodes.layout.nodeDir(n),
      'pod-logs',
      `${p.metadata!.namespace}_${p.metadata!.name}_${p.metadata!.uid}`,
    );
  }

  async pods(): Promise<NodePod[]> {
    const all = (await this.core.listPodForAllNamespaces()).items;
    return all
      .filter((p) => p.spec?.nodeName && this.nodes.nodeNames().includes(p.spec.nodeName))
      .map((p) => ({
        namespace: p.metadata!.namespace!,
        name: p.metadata!.name!,
        uid: p.metadata!.uid,
        node: p.spec!.nodeName!,
        ip: p.status?.podIP,
        logDir: this.logDir(p),
      }));
  }
  async pod(namespace: string, name: string): Promise<NodePod | undefined> {
    return (await this.pods()).find((p) => p.namespace === namespace && p.name === name);
  }

  async crash(namespace: string, pod: string, container?: string) {
    const pid = await this.pidOf(await this.read(namespace, pod), container);
    process.kill(pid, 'SIGKILL');
    return { killed: pid };
  }

  /** The sandbox: the pause process holding the pod's network namespace (it outlives container restarts). */
  private async sandboxPid(namespace: string, pod: string): Promise<number> {
    const netns = readlinkSync(`/proc/${await this.pidOf(await this.read(namespace, pod))}/ns/net`);
    const sandbox = readdirSync('/proc').find((d) => {
      try {
        return (
          /^\d+$/.test(d) &&
          readFileSync(`/proc/${d}/comm`, 'utf8').trim() === 'pause' &&
          readlinkSync(`/proc/${d}/ns/net`) === netns
        );
      } catch {
        return false;
      }
    });
    if (!sandbox) throw new Error(`pod ${namespace}/${pod}: sandbox not found`);
    return Number(sandbox);
  }

  /** Kills the pod's sandbox (pause): the kubelet makes a new one and runs init containers again. */
  async restartPod(namespace: string, pod: string) {
    const pid = await this.sandboxPid(namespace, pod);
    process.kill(pid, 'SIGKILL');
    return { killed: pid };
  }

  /** The argv prefix that runs a command inside the pod's network namespace (through its sandbox). */
  async podNetwork(namespace: string, pod: string): Promise<string[]> {
    return ['nsenter', '-t', String(await this.sandboxPid(namespace, pod)), '-n', '--'];
  }

  private async inPodNet(namespace: string, pod: string, ...cmd: string[]): Promise<V1Pod> {
    const p = await this.read(namespace, pod);
    const pid = await this.pidOf(p);
    await run('nsenter', ['-t', String(pid), '-n', '--', ...cmd]);
    return p;
  }
  /** The pod's eth0 goes down inside its namespace: it reaches nothing and nothing reaches it. */
  async cutNetwork(namespace: string, pod: string) {
    await this.inPodNet(namespace, pod, 'ip', 'link', 'set', 'eth0', 'down');
    return { cut: `${namespace}/${pod}` };
  }
  async restoreNetwork(namespace: string, pod: string) {
    const p = await this.inPodNet(namespace, pod, 'ip', 'link', 'set', 'eth0', 'up');
    // A link going down drops its routes: the default route comes back by hand.
    const gw = this.nodes.addr.nodeIP(this.nodes.nodeIndex(p.spec!.nodeName!));
    await this.inPodNet(namespace, pod, 'ip', 'route', 'replace', 'default', 'via', gw, 'dev', 'eth0');
    return { restored: `${namespace}/${pod}` };
  }
  /** Only this host's path (the controller's): pods still reach each other inside the nodes' namespace. */
  async cutHostPath(namespace: string, pod: string) {
    const ip = (await this.read(namespace, pod)).status?.podIP;
    await run('ip', ['route', 'replace', 'prohibit', `${ip}/32`]);
    return { cut: ip };
  }
  async restoreHostPath(namespace: string, pod: string) {
    const ip = (await this.read(namespace, pod)).status?.podIP;
    await run('ip', ['route', 'del', 'prohibit', `${ip}/32`]).catch(() => undefined);
    return { restored: ip };
  }
  async stopNode(node: string) {
    this.nodes.stopNode(node);
    return { stopped: node };
  }
  async startNode(node: string) {
    this.nodes.startNode(node);
    return { started: node };
  }

  /** The host folder behind a pod's emptyDir volume: the kubelet's, under its root dir (a plain directory: no
   *  medium set). */
  async emptyDirPath(namespace: string, pod: string, volume: string): Promise<string> {
    const p = await this.read(namespace, pod);
    const n = this.nodes.nodeIndex(p.spec!.nodeName!);
    return join(
      this.nodes.layout.kubeletDir(n),
      'pods',
      p.metadata!.uid!,
      'volumes',
      'kubernetes.io~empty-dir',
      volume,
    );
  }

  /** The container's current log as it wrote it (the kubelet's CRI format `<time> <stream> <P|F> <text>`
   *  unwrapped, partial lines joined). */
  async logs(namespace: string, pod: string, container: string): Promise<string> {
    const dir = join(this.logDir(await this.read(namespace, pod)), container);
    if (!existsSync(dir)) return '';
    const files = readdirSync(dir)
      .filter((f) => f.endsWith('.log'))
      .sort((a, b) => parseInt(a) - parseInt(b));
    if (!files.length) return '';
    return readFileSync(join(dir, files[files.length - 1]), 'utf8')
      .split('\n')
      .map((l) => /^\S+ (?:stdout|stderr) ([PF]) (.*)$/.exec(l))
      .filter((m): m is RegExpExecArray => !!m)
      .map((m) => (m[1] === 'P' ? m[2] : `${m[2]}\n`))
      .join('');
  }
}
