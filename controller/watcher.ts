// The watcher turns Kubernetes changes into signals to the per-cluster workflow (signal-with-start).
// Watches are only triggers: a periodic relist pokes every cluster, so a missed event costs latency.
import {
  CoreV1Api,
  CustomObjectsApi,
  makeInformer,
  type KubeConfig,
  type KubernetesObject,
  type V1Pod,
} from '@kubernetes/client-node';
import type { Client } from '@temporalio/client';
import type { Logger } from 'pino';
import { clusterWorkflowId, searchTags, taskQueue as defaultTaskQueue } from '../api/names.js';
import { apiVersion, clusterOf, memberSelector, plural, resource, rotateCertsAnnotation } from '../api/etcdcluster.js';
import { clusterWorkflowType, reconcileSignal } from '../api/workflows.js';

export interface ClusterObject extends KubernetesObject {
  metadata: {
    name: string;
    namespace: string;
    generation?: number;
    deletionTimestamp?: Date;
    uid: string;
    annotations?: Record<string, string>;
  };
  status?: {
    readyMembers?: number;
    currentOperation?: unknown;
    tls?: { caNotAfter?: string; certificates?: { secret: string; notAfter: string }[] };
  };
}

export interface WatcherOptions {
  namespaces?: string[];
  taskQueue?: string;
  relistSeconds?: number;
  minPokeGapMs?: number;
  /** Test knob: caps the wait deadlines of operations of clusters whose workflow this watcher starts. */
  waitCapSeconds?: number;
}

export class Watcher {
  private informers: { stop(): Promise<void> }[] = [];
  private timer?: NodeJS.Timeout;
  private seen = new Map<string, string>();
  private clusters = new Map<string, ClusterObject>();
  private lastPoke = new Map<string, number>();
  private trailingPoke = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly kc: KubeConfig,
    private readonly client: Client,
    private readonly log: Logger,
    private readonly opts: WatcherOptions = {},
  ) {}

  async start(): Promise<void> {
    const custom = this.kc.makeApiClient(CustomObjectsApi);
    const core = this.kc.makeApiClient(CoreV1Api);
    const scopes = this.opts.namespaces?.length ? this.opts.namespaces : [undefined];
    for (const ns of scopes) {
      const path = ns ? `/apis/${apiVersion}/namespaces/${ns}/${plural}` : `/apis/${apiVersion}/${plural}`;
      const list = () =>
        (ns
          ? custom.listNamespacedCustomObject({ ...resource, namespace: ns })
          : custom.listClusterCustomObject(resource)) as Promise<{
          items: ClusterObject[];
          metadata: { resourceVersion?: string };
        }>;
      const clusters = makeInformer<ClusterObject>(this.kc, path, list as never);
      clusters.on('add', (o) => this.onCluster(o, 'created'));
      clusters.on('update', (o) => this.onCluster(o, 'changed'));
      clusters.on('delete', (o) => this.clusters.delete(key(o)));
      this.keepAlive(plural, clusters);
      await clusters.start();
      this.informers.push(clusters);

      const podPath = ns ? `/api/v1/namespaces/${ns}/pods` : '/api/v1/pods';
      const pods = makeInformer<V1Pod>(
        this.kc,
        podPath,
        () =>
          ns
            ? core.listNamespacedPod({ namespace: ns, labelSelector: memberSelector() })
            : core.listPodForAllNamespaces({ labelSelector: memberSelector() }),
        memberSelector(),
      );
      pods.on('delete', (p) => this.onPod(p, 'deleted'));
      pods.on('update', (p) => this.onPod(p, 'changed'));
      this.keepAlive('pods', pods);
      await pods.start();
      this.informers.push(pods);
    }
    this.timer = setInterval(() => this.relist(), (this.opts.relistSeconds ?? 60) * 1000);
    this.relist();
    this.log.info({ namespaces: this.opts.namespaces ?? 'all' }, 'watcher started');
  }

  /** Informers stop on errors other than 410: restart after a pause, one timer at a time. The pause starts short
   *  (a new CRD's watch cache answers 429 for a moment after the controller creates it, when a user may already be
   *  creating a cluster): every 200 ms for ten failures in a row (2 s), then doubling to 3 s while failures come
   *  within 30 s of each other. */
  private keepAlive(
    what: string,
    informer: { on(verb: 'error', cb: (err?: unknown) => void): void; start(): Promise<void> },
  ): void {
    let pending = false;
    let failures = 0;
    let lastFailure = 0;
    informer.on('error', (err) => {
      if (pending) return;
      pending = true;
      if (Date.now() - lastFailure > 30_000) failures = 0;
      lastFailure = Date.now();
      const pauseMs = Math.min(3000, 200 * 2 ** Math.max(0, failures++ - 9));
      this.log.warn({ what, err: String(err), pauseMs }, 'watch failed; restarting after a pause');
      setTimeout(() => {
        pending = false;
        informer.start().catch((e) => this.log.warn({ what, err: String(e) }, 'watch restart failed'));
      }, pauseMs);
    });
  }

  private onCluster(o: ClusterObject, why: string): void {
    this.clusters.set(key(o), o);
    // Level-triggered: only spec changes (generation) and deletion matter; our own status writes do not.
    // A certificate rotation request (an annotation) too.
    const fingerprint = `${o.metadata.uid}/${o.metadata.generation}/${o.metadata.deletionTimestamp ? 'deleting' : ''}/${o.metadata.annotations?.[rotateCertsAnnotation] ?? ''}`;
    if (this.seen.get(key(o)) === fingerprint) return;
    this.seen.set(key(o), fingerprint);
    void this.poke(o.metadata.namespace, o.metadata.name, `EtcdCluster ${why}`, true);
  }

  private onPod(p: V1Pod, why: string): void {
    const cluster = clusterOf(p.metadata?.labels);
    if (!cluster || !this.clusters.has(`${p.metadata!.namespace}/${cluster}`)) return;
    // Pod loss or a readiness flip is signalled at once, not found on the next health check.
    const ready = p.status?.conditions?.find((c) => c.type === 'Ready')?.status;
    const fp = `${p.metadata!.uid}/${p.status?.phase}/${ready}/${p.metadata?.deletionTimestamp ? 'd' : ''}/${why === 'deleted' ? 'gone' : ''}`;
    const k = `pod:${p.metadata!.namespace}/${p.metadata!.name}`;
    if (this.seen.get(k) === fp) return;
    this.seen.set(k, fp);
    if (why === 'deleted') this.seen.delete(k);
    // While an operation runs the cluster loop waits for it and looks again when it ends: a poke would only add
    // history (~4 events each, a flapping pod every 3 s), so the relist is enough then (issue 13, history stays small).
    // A member going away is the exception: it starts a replacement, never held back (nor by the throttle).
    const lost = why === 'deleted' || !!p.metadata?.deletionTimestamp || p.status?.phase === 'Failed';
    if (!lost && this.clusters.get(`${p.metadata!.namespace}/${cluster}`)?.status?.currentOperation) return;
    void this.poke(p.metadata!.namespace!, cluster, `pod ${p.metadata!.name} ${why}`, lost);
  }

  private relist(): void {
    for (const o of this.clusters.values()) void this.poke(o.metadata.namespace, o.metadata.name, 'periodic relist');
  }

  /** The EtcdClusters the watcher currently knows (for metrics). */
  clusterObjects(): ClusterObject[] {
    return [...this.clusters.values()];
  }

  /** Signals the cluster workflow. At most one signal per cluster every minPokeGapMs (3 s): a burst (a
   *  flapping pod) becomes one trailing poke, so pokes add a bounded number of events per minute to the
   *  cluster's history (~4 each), even while a long operation keeps it from continuing as new. Urgent
   *  changes are signalled at once (a spec change or deletion, a member pod going away: once each). */
  async poke(namespace: string, name: string, reason: string, urgent = false): Promise<void> {
    const k = `${namespace}/${name}`;
    const wait = (this.lastPoke.get(k) ?? 0) + (this.opts.minPokeGapMs ?? 3000) - Date.now();
    if (wait > 0 && !urgent) {
      if (!this.trailingPoke.has(k))
        this.trailingPoke.set(
          k,
          setTimeout(() => {
            this.trailingPoke.delete(k);
            void this.poke(namespace, name, reason);
          }, wait),
        );
      return;
    }
    this.lastPoke.set(k, Date.now());
    try {
      await this.client.workflow.signalWithStart(clusterWorkflowType, {
        workflowId: clusterWorkflowId({ namespace, name }),
        taskQueue: this.opts.taskQueue ?? defaultTaskQueue,
        args: [{ namespace, name, ...(this.opts.waitCapSeconds ? { waitCapSeconds: this.opts.waitCapSeconds } : {}) }],
        signal: reconcileSignal,
        signalArgs: [reason],
        typedSearchAttributes: searchTags({ namespace, name }, 'cluster'),
        staticSummary: `EtcdCluster ${namespace}/${name}: keeps it at its spec`,
        // The loop's look runs inside the workflow task (a local activity, issue 17). The SDK keeps such a task alive by
        // completing it at 80 % of this timeout: the default 10 s left a 2 s margin that a loaded machine overran.
        workflowTaskTimeout: clusterWorkflowTaskTimeout,
      });
      this.log.debug({ cluster: `${namespace}/${name}`, reason }, 'signalled cluster workflow');
    } catch (e) {
      this.log.warn(
        { cluster: `${namespace}/${name}`, err: (e as Error).message },
        'could not signal cluster workflow',
      );
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    for (const t of this.trailingPoke.values()) clearTimeout(t);
    await Promise.all(this.informers.map((i) => i.stop().catch(() => undefined)));
  }
}

/** Continue-as-new keeps it (the server carries it to the next run). A task on a worker that died is given to another
 *  worker after this long. */
const clusterWorkflowTaskTimeout = '30s';

const key = (o: ClusterObject) => `${o.metadata.namespace}/${o.metadata.name}`;
