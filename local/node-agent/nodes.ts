// The agent's Nodes: registration, Lease renewals and Ready heartbeats, and the stop/start fault.
import {
  setHeaderOptions,
  PatchStrategy,
  type CoordinationV1Api,
  type CoreV1Api,
  type V1Node,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';

const leaseSeconds = 40;
const leaseRenewMs = 3000;
const statusEveryMs = 10000;

export class NodeSet {
  private stopped = new Set<string>();
  private timer?: NodeJS.Timeout;
  private lastStatus = new Map<string, number>();

  constructor(
    readonly names: string[],
    private readonly core: CoreV1Api,
    private readonly coord: CoordinationV1Api,
    private readonly hostIP: () => string,
    private readonly log: Logger,
  ) {}

  has(name: string | undefined): boolean {
    return !!name && this.names.includes(name);
  }
  running(name: string): boolean {
    return this.has(name) && !this.stopped.has(name);
  }

  async register(): Promise<void> {
    for (const [i, name] of this.names.entries()) {
      const node: V1Node = {
        metadata: {
          name,
          labels: {
            'kubernetes.io/hostname': name,
            'kubernetes.io/os': 'linux',
            'kubernetes.io/arch': 'amd64',
            'topology.kubernetes.io/zone': `zone-${i}`,
            'node.kube-etcd-controller.local/agent': 'true',
          },
        },
        spec: {},
      };
      try {
        await this.core.createNode({ body: node });
      } catch (e) {
        if ((e as { code?: number }).code !== 409) throw e;
      }
      await this.heartbeat(name, true);
    }
    this.timer = setInterval(() => void this.beat(), leaseRenewMs);
  }

  private async beat(): Promise<void> {
    for (const name of this.names) {
      if (this.stopped.has(name)) continue;
      await this.heartbeat(name, Date.now() - (this.lastStatus.get(name) ?? 0) >= statusEveryMs).catch((e) =>
        this.log.warn({ node: name, err: (e as Error).message }, 'heartbeat failed'),
      );
    }
  }

  private async heartbeat(name: string, withStatus: boolean): Promise<void> {
    // Lease times are MicroTime (6 fractional digits); the client's Date serialisation gives 3, so patch raw JSON.
    const renewTime = new Date().toISOString().replace(/Z$/, '000Z');
    const patch = { spec: { holderIdentity: name, leaseDurationSeconds: leaseSeconds, renewTime } };
    const opts = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    try {
      await this.coord.patchNamespacedLease({ name, namespace: 'kube-node-lease', body: patch }, opts);
    } catch (e) {
      if ((e as { code?: number }).code !== 404) throw e;
      await this.coord.createNamespacedLease({
        namespace: 'kube-node-lease',
        body: { metadata: { name, namespace: 'kube-node-lease' }, spec: { holderIdentity: name } },
      });
      await this.coord.patchNamespacedLease({ name, namespace: 'kube-node-lease', body: patch }, opts);
    }
    if (!withStatus) return;
    const t = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const res = { cpu: '8', memory: '16Gi', pods: '110', 'ephemeral-storage': '100Gi' };
    const cond = (type: string, status: string, reason: string) => ({
      type,
      status,
      reason,
      lastHeartbeatTime: t,
      message: reason,
    });
    await this.core.patchNodeStatus(
      {
        name,
        body: {
          status: {
            capacity: res,
            allocatable: res,
            addresses: [
              { type: 'InternalIP', address: this.hostIP() },
              { type: 'Hostname', address: name },
            ],
            conditions: [
              cond('Ready', 'True', 'KubeletReady'),
              cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory'),
              cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure'),
              cond('PIDPressure', 'False', 'KubeletHasSufficientPID'),
            ],
            nodeInfo: {
              kubeletVersion: 'v1.37.2-kec-agent',
              kubeProxyVersion: '',
              operatingSystem: 'linux',
              architecture: 'amd64',
              containerRuntimeVersion: 'kec-process://1',
              kernelVersion: '',
              osImage: 'kube-etcd-controller node agent',
              machineID: name,
              systemUUID: name,
              bootID: name,
            },
            daemonEndpoints: { kubeletEndpoint: { Port: 0 } },
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
    this.lastStatus.set(name, Date.now());
  }

  /** Fault: the node stops heartbeating (the node lifecycle controller will mark it NotReady). */
  stop(name: string): void {
    this.stopped.add(name);
  }

  async start(name: string): Promise<void> {
    this.stopped.delete(name);
    await this.heartbeat(name, true);
  }

  close(): void {
    clearInterval(this.timer);
  }
}
