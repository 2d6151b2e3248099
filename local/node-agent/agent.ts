// The node agent: plays the kubelet for a set of Nodes on this machine, running pods as processes.
import { createServer, type Server } from 'node:http';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  StorageV1Api,
  makeInformer,
  type V1Pod,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { reuseConnections } from '../../activities/kube-connections.js';
import { isAlive, signalGroup } from '../process.js';
import { HostServices, type HostService } from './host-services.js';
import { PodNetwork } from './network.js';
import { NodeSet } from './nodes.js';
import { objectRef } from './object-ref.js';
import { PodWorker, type AgentContext } from './pod-worker.js';
import { LocalPathProvisioner } from './provisioner.js';

export interface AgentOptions {
  kubeconfig: string;
  stateDir: string;
  nodes: number;
  log: Logger;
  services?: HostService[];
}

export class NodeAgent {
  private readonly kc = new KubeConfig();
  private readonly core: CoreV1Api;
  readonly network: PodNetwork;
  readonly nodes: NodeSet;
  private readonly provisioner: LocalPathProvisioner;
  private readonly services: HostServices;
  private readonly workers = new Map<string, PodWorker>();
  private informer?: ReturnType<typeof makeInformer<V1Pod>>;
  private tick?: NodeJS.Timeout;
  private control?: Server;
  private readonly log: Logger;
  private hosts = '';
  private shuttingDown = false;

  constructor(private readonly opts: AgentOptions) {
    this.log = opts.log;
    this.kc.loadFromFile(opts.kubeconfig);
    reuseConnections(this.kc); // pod status for dozens of pods at once: one connection, not a handshake per patch
    this.core = this.kc.makeApiClient(CoreV1Api);
    mkdirSync(join(opts.stateDir, 'pods'), { recursive: true });
    this.network = new PodNetwork(opts.stateDir, this.log);
    const names = Array.from({ length: opts.nodes }, (_, i) => `node-${i + 1}`);
    this.nodes = new NodeSet(
      names,
      this.core,
      this.kc.makeApiClient(CoordinationV1Api),
      () => this.network.gateway,
      this.log,
    );
    this.services = new HostServices(opts.services ?? [], this.log);
    this.provisioner = new LocalPathProvisioner(
      this.core,
      this.kc.makeApiClient(StorageV1Api),
      join(opts.stateDir, 'volumes'),
      this.log,
    );
  }

  private get ctx(): AgentContext {
    return {
      core: this.core,
      log: this.log,
      network: this.network,
      podsDir: join(this.opts.stateDir, 'pods'),
      logsDir: join(this.opts.stateDir, 'logs'),
      hostIP: this.network.gateway,
      nodeRunning: (n) => this.nodes.running(n),
      stopping: () => this.shuttingDown,
      hostsFor: (pod) => this.hostsFor(pod),
      serviceEnv: () => this.services.env(),
      event: (pod, type, reason, message) => void this.event(pod, type, reason, message),
    };
  }

  async start(): Promise<void> {
    await this.network.setup();
    if (this.network.mode === 'netns') await this.services.start(this.network.gateway);
    else if (this.services.services.length)
      this.log.warn('pods share the host network: host services are not forwarded');
    await this.nodes.register();
    await this.provisioner.start();
    await this.startControl();
    await this.startInformer();
    await this.reapOrphans();
    this.tick = setInterval(() => this.resync(), 2000);
    writeFileSync(join(this.opts.stateDir, 'ready'), new Date().toISOString());
    this.log.info({ nodes: this.nodes.names, mode: this.network.mode }, 'node agent ready');
  }

  private async startInformer(): Promise<void> {
    const informer = makeInformer<V1Pod>(this.kc, '/api/v1/pods', () => this.core.listPodForAllNamespaces());
    const onPod = (pod: V1Pod) => this.onPod(pod);
    informer.on('add', onPod);
    informer.on('update', onPod);
    informer.on('delete', (pod) => void this.onPodGone(pod));
    informer.on('error', (err) => {
      // The informer stops on any error but 410: restart it after a pause (sdk-pitfalls §2.6).
      this.log.warn({ err: String(err) }, 'pod watch failed; restarting in 2s');
      setTimeout(() => void informer.start().catch(() => undefined), 2000);
    });
    this.informer = informer;
    await informer.start();
  }

  private onPod(pod: V1Pod): void {
    if (!this.nodes.has(pod.spec?.nodeName)) return;
    const uid = pod.metadata!.uid!;
    let w = this.workers.get(uid);
    if (!w) {
      w = new PodWorker(this.ctx, pod);
      this.workers.set(uid, w);
      if (!pod.metadata?.deletionTimestamp) this.named(uid);
    }
    w.sync(pod);
  }

  /** A new pod's address goes into every pod's hosts file at once, not at the next resync (up to 2 s later):
   *  pods started together (a static bootstrap) find each other on their first lookup. */
  private named(uid: string): void {
    this.network.reserve(uid);
    this.hosts = this.buildHosts();
    for (const [other, w] of this.workers) if (other !== uid) w.refreshHosts();
  }

  private buildHosts(): string {
    return buildHosts(this.informer?.list() ?? [], (uid) => this.network.sandbox(uid)?.ip);
  }

  private async onPodGone(pod: V1Pod): Promise<void> {
    const w = this.workers.get(pod.metadata!.uid!);
    if (!w) return;
    this.workers.delete(pod.metadata!.uid!);
    await w.cleanup();
  }

  /** Periodic level-triggered pass: every pod we own gets synced; hosts files follow pod IPs. */
  private resync(): void {
    const pods = this.informer?.list() ?? [];
    this.hosts = this.buildHosts();
    for (const pod of pods) this.onPod(pod);
  }

  private hostsFor(pod: V1Pod): string {
    if (!this.hosts) this.hosts = this.buildHosts();
    const ns = pod.metadata?.namespace;
    // The pod's own name resolves at once, before its IP reaches the API and the other pods.
    const ip = this.workers.get(pod.metadata!.uid!)?.ip ?? '127.0.1.1';
    const host = pod.spec?.hostname ?? pod.metadata?.name;
    const fqdn = pod.spec?.subdomain ? `${host}.${pod.spec.subdomain}.${ns}` : '';
    const own = `${ip}\t${fqdn ? `${fqdn}.svc.cluster.local ${fqdn}.svc ${fqdn} ${host}.${pod.spec!.subdomain} ` : ''}${host}\n`;
    return (
      `127.0.0.1\tlocalhost\n${own}${this.services.hostsLines()}` +
      this.hosts
        .split('\n')
        .map((l) => {
          // Short names (<host>.<subdomain>) resolve within the pod's own namespace, as with a search path.
          const m = /^(\S+)\t(\S+)\.(\S+)\.(\S+)\.svc\.cluster\.local (.*)$/.exec(l);
          return m && m[4] === ns ? `${l} ${m[2]}.${m[3]}` : l;
        })
        .join('\n') +
      '\n'
    );
  }

  /** Kills container processes of pods that vanished while the agent was away. */
  private async reapOrphans(): Promise<void> {
    const live = new Set((this.informer?.list() ?? []).map((p) => p.metadata!.uid!));
    const podsDir = join(this.opts.stateDir, 'pods');
    for (const uid of readdirSync(podsDir)) {
      if (live.has(uid)) continue;
      try {
        const rt = JSON.parse(readFileSync(join(podsDir, uid, 'runtime.json'), 'utf8')) as {
          containers: Record<string, { pid?: number }>;
        };
        for (const c of Object.values(rt.containers)) if (c.pid && isAlive(c.pid)) signalGroup(c.pid, 'SIGKILL');
      } catch {
        /* no runtime file */
      }
      rmSync(join(podsDir, uid), { recursive: true, force: true });
    }
    await this.network.prune(live);
  }

  private async event(pod: V1Pod, type: string, reason: string, message: string): Promise<void> {
    const t = new Date();
    await this.core
      .createNamespacedEvent({
        namespace: pod.metadata!.namespace!,
        body: {
          metadata: { generateName: `${pod.metadata!.name}.`, namespace: pod.metadata!.namespace },
          involvedObject: objectRef('Pod', 'v1', pod.metadata!),
          type,
          reason,
          message,
          source: { component: 'node-agent', host: pod.spec?.nodeName },
          firstTimestamp: t,
          lastTimestamp: t,
          count: 1,
          reportingComponent: 'node-agent',
          reportingInstance: pod.spec?.nodeName ?? '',
        },
      })
      .catch((e) => this.log.debug({ err: (e as Error).message }, 'event not recorded'));
  }

  private worker(ns: string, name: string): PodWorker {
    const w = [...this.workers.values()].find((x) => x.pod.metadata?.namespace === ns && x.pod.metadata?.name === name);
    if (!w) throw new Error(`pod ${ns}/${name} is not running on this agent's nodes`);
    return w;
  }

  // --- fault helpers and inspection, served on a loopback control port for tests and the CLI ---
  private async startControl(): Promise<void> {
    const routes: Record<string, (q: URLSearchParams) => Promise<unknown>> = {
      '/pods': async () =>
        [...this.workers.values()].map((w) => ({
          namespace: w.pod.metadata?.namespace,
          name: w.pod.metadata?.name,
          uid: w.pod.metadata?.uid,
          node: w.node,
          ip: w.ip,
          netns: w.netns,
          pid: w.containerPid(),
          logDir: w.logDir,
        })),
      '/crash': async (q) => ({
        crashed: this.worker(q.get('namespace') ?? 'default', q.get('pod')!).crash(q.get('container') ?? undefined),
      }),
      '/pod/restart': async (q) => {
        await this.worker(q.get('namespace') ?? 'default', q.get('pod')!).restartSandbox();
        return { restarted: true };
      },
      '/network/cut-host': async (q) => {
        await this.network.cutHost(
          this.worker(q.get('namespace') ?? 'default', q.get('pod')!).key,
          q.get('restore') === 'true',
        );
        return { ok: true };
      },
      '/network/cut': async (q) => {
        await this.network.cut(this.worker(q.get('namespace') ?? 'default', q.get('pod')!).key, false);
        return { cut: true };
      },
      '/network/restore': async (q) => {
        await this.network.cut(this.worker(q.get('namespace') ?? 'default', q.get('pod')!).key, true);
        return { restored: true };
      },
      '/nodes/stop': async (q) => {
        const node = q.get('node')!;
        if (!this.nodes.has(node)) throw new Error(`unknown node ${node}`);
        this.nodes.stop(node);
        await Promise.all([...this.workers.values()].filter((w) => w.node === node).map((w) => w.killAll(0)));
        return { stopped: node };
      },
      '/nodes/start': async (q) => {
        const node = q.get('node')!;
        await this.nodes.start(node);
        for (const w of this.workers.values())
          if (w.node === node) {
            w.resetStatus();
            w.sync(w.pod);
          }
        return { started: node };
      },
    };
    this.control = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const route = routes[url.pathname];
      if (!route) {
        res.writeHead(404).end('{"error":"no such route"}');
        return;
      }
      route(url.searchParams).then(
        (body) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body)),
        (e) =>
          res
            .writeHead(400, { 'content-type': 'application/json' })
            .end(JSON.stringify({ error: (e as Error).message })),
      );
    });
    await new Promise<void>((r) => this.control!.listen(0, '127.0.0.1', r));
    const port = (this.control.address() as { port: number }).port;
    writeFileSync(join(this.opts.stateDir, 'control.json'), JSON.stringify({ url: `http://127.0.0.1:${port}` }));
  }

  /** Graceful stop: every pod process ends, every namespace and the bridge go. API objects stay. */
  async stop(): Promise<void> {
    this.shuttingDown = true; // a container killed below must not be restarted by its restart policy
    clearInterval(this.tick);
    this.nodes.close();
    this.provisioner.close();
    await this.informer?.stop().catch(() => undefined);
    await Promise.all([...this.workers.values()].map((w) => w.killAll(5)));
    await this.services.stop();
    await this.network.teardown();
    this.control?.close();
    for (const f of ['ready', 'control.json'])
      if (existsSync(join(this.opts.stateDir, f))) rmSync(join(this.opts.stateDir, f));
  }
}

/** hosts lines for every pod with hostname + subdomain: <host>.<subdomain>.<ns>.svc[.cluster.local]. The address
 *  this agent chose (by pod UID) before the API shows it, else the pod's status. */
export function buildHosts(
  pods: readonly V1Pod[],
  known: (uid: string) => string | undefined = () => undefined,
): string {
  const lines: string[] = [];
  for (const p of pods) {
    const ip = known(p.metadata?.uid ?? '') ?? p.status?.podIP;
    const h = p.spec?.hostname;
    const sub = p.spec?.subdomain;
    if (!ip || !h || !sub || p.metadata?.deletionTimestamp) continue;
    const base = `${h}.${sub}.${p.metadata!.namespace}`;
    lines.push(`${ip}\t${base}.svc.cluster.local ${base}.svc ${base}`);
  }
  return lines.sort().join('\n');
}
