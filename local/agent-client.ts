// Talks to a running node agent's loopback control port: fault helpers and pod inspection.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface AgentPod {
  namespace: string;
  name: string;
  uid?: string;
  node: string;
  ip?: string;
  netns?: string;
  pid?: number;
  logDir: string;
}

export class AgentClient {
  constructor(readonly agentDir: string) {}

  private async call<T>(path: string, params: Record<string, string | undefined> = {}): Promise<T> {
    const file = join(this.agentDir, 'control.json');
    if (!existsSync(file)) throw new Error(`no node agent is running from ${this.agentDir}`);
    const { url } = JSON.parse(readFileSync(file, 'utf8')) as { url: string };
    const q = new URLSearchParams(Object.entries(params).filter((e): e is [string, string] => e[1] !== undefined));
    const res = await fetch(`${url}${path}?${q}`, { method: 'POST' });
    const body = (await res.json()) as T & { error?: string };
    if (!res.ok) throw new Error(`node agent ${path}: ${body.error}`);
    return body;
  }

  pods(): Promise<AgentPod[]> {
    return this.call('/pods');
  }
  async pod(namespace: string, name: string): Promise<AgentPod | undefined> {
    return (await this.pods()).find((p) => p.namespace === namespace && p.name === name);
  }
  /** The argv prefix that runs a command inside the pod's network namespace (as one of its containers would). */
  async podNetwork(namespace: string, pod: string): Promise<string[]> {
    const netns = (await this.pod(namespace, pod))?.netns;
    if (!netns) throw new Error(`pod ${namespace}/${pod} has no network namespace on this node agent`);
    return ['ip', 'netns', 'exec', netns];
  }
  /** SIGKILLs the container's process, as a crash would. */
  crash(namespace: string, pod: string, container?: string) {
    return this.call('/crash', { namespace, pod, container });
  }
  /** Recreates the pod's sandbox: every container killed, init containers run again (a node reboot). */
  restartPod(namespace: string, pod: string) {
    return this.call('/pod/restart', { namespace, pod });
  }
  cutNetwork(namespace: string, pod: string) {
    return this.call('/network/cut', { namespace, pod });
  }
  /** Only this host's path to the pod (the controller's, the probes'): the pod still reaches the other pods. */
  cutHostPath(namespace: string, pod: string) {
    return this.call('/network/cut-host', { namespace, pod });
  }
  restoreHostPath(namespace: string, pod: string) {
    return this.call('/network/cut-host', { namespace, pod, restore: 'true' });
  }
  restoreNetwork(namespace: string, pod: string) {
    return this.call('/network/restore', { namespace, pod });
  }
  stopNode(node: string) {
    return this.call('/nodes/stop', { node });
  }
  startNode(node: string) {
    return this.call('/nodes/start', { node });
  }

  /** The host folder behind a pod's emptyDir volume (what its containers see at the mount). */
  async emptyDirPath(namespace: string, pod: string, volume: string): Promise<string> {
    const uid = (await this.pod(namespace, pod))?.uid;
    if (!uid) throw new Error(`pod ${namespace}/${pod} is not on this agent`);
    return join(this.agentDir, 'pods', uid, 'volumes', volume);
  }

  async logs(namespace: string, pod: string, container: string): Promise<string> {
    const p = await this.pod(namespace, pod);
    if (!p) throw new Error(`pod ${namespace}/${pod} is not on this agent`);
    const f = join(p.logDir, `${container}.log`);
    return existsSync(f) ? readFileSync(f, 'utf8') : '';
  }
}
