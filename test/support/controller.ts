// The controller (worker + watcher) as a real process against a test stack, so tests can kill it.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CustomObjectsApi, loadAllYaml, type V1Deployment } from '@kubernetes/client-node';
import { Etcd3 } from 'etcd3';
import { ManagedProcess } from '../../local/process.js';
import { bins, distDir, ensureBuilt, tsEntry } from '../../local/toolchain.js';
import { mergePatch } from '../../activities/kube.js';
import type { StackOptions } from '../../local/stack.js';
import { eventually, startTestStack, type TestStack } from './stack.js';
import {
  apiVersion,
  EtcdClusterObject,
  EtcdClusterStatus,
  kind,
  memberSelector,
  resource,
} from '../../api/etcdcluster.js';
import { clientOptions, etcdAs, isTlsPod, readTlsSecret, type TlsCredentials } from '../../activities/etcd-client.js';
import { clientTlsSecretName } from '../../api/names.js';

const run = promisify(execFile);

/** The process settings deploy/controller.yaml gives the controller (V8 heap flags, malloc settings): the built
 *  controller runs with them, as in its pod, so the bench measures the memory of what is deployed. */
export function deployedProcessEnv(): Record<string, string> {
  const manifest = readFileSync(fileURLToPath(new URL('../../deploy/controller.yaml', import.meta.url)), 'utf8');
  const deployment = (loadAllYaml(manifest) as V1Deployment[]).find((d) => d.kind === 'Deployment');
  const env = deployment?.spec?.template.spec?.containers[0].env ?? [];
  return Object.fromEntries(
    env
      .filter((e) => (e.name === 'NODE_OPTIONS' || e.name.startsWith('MALLOC_')) && e.value)
      .map((e) => [e.name, e.value!]),
  );
}

export class TestController {
  proc?: ManagedProcess;
  /** Restarts done by supervise() after the controller died. */
  restarts = 0;
  /** Run the compiled controller (dist/ and its prebuilt workflow bundle, as the image does) instead of the sources. */
  built = false;
  /** Node flags for the built controller that NODE_OPTIONS refuses (e.g. --cpu-prof --cpu-prof-dir=<dir>). */
  nodeArgs: string[] = [];
  private n = 0;
  private supervised?: Record<string, string>;
  constructor(
    private readonly t: TestStack,
    private readonly role = 'controller',
  ) {}

  /** Starts the controller and, like a Deployment, starts it again whenever it dies, until stop(). */
  supervise(env: Record<string, string> = {}): void {
    this.supervised = env;
    const p = this.start(env);
    void p.exited.then(() => {
      if (this.supervised !== env || this.proc !== p) return;
      this.restarts++;
      this.supervise(env);
    });
  }

  start(env: Record<string, string> = {}): ManagedProcess {
    // Never two controllers at once: a test that failed half-way may have left one running.
    if (this.proc?.running) process.kill(-this.proc.pid, 'SIGKILL');
    // The state folder on the command line lets CI clean-up (pkill -f <tmp>) find a leaked controller.
    const stackArg = `--test-stack=${this.t.stack.logsDir}`;
    if (this.built) ensureBuilt();
    const [cmd, ...args] = this.built
      ? [process.execPath, ...this.nodeArgs, join(distDir, 'controller', 'main.js'), stackArg]
      : tsEntry('controller/main.ts', stackArg);
    mkdirSync(join(this.t.stack.logsDir), { recursive: true });
    this.proc = new ManagedProcess({
      name: `${this.role}-${this.n++}`,
      cmd,
      args,
      logFile: join(this.t.stack.logsDir, `${this.role}.log`),
      env: {
        ...process.env,
        NODE_OPTIONS: '',
        ...(this.built ? deployedProcessEnv() : {}),
        KUBECONFIG: this.t.stack.kubeconfig,
        TEMPORAL_ADDRESS: this.t.stack.temporalAddress,
        KEC_CRASH_MARKER_DIR: join(this.t.stack.logsDir, 'crash-markers'),
        KEC_RELIST_SECONDS: '20',
        ...env,
      },
    });
    return this.proc;
  }

  /** SIGKILL: no shutdown code runs, exactly like a crash. */
  async kill(): Promise<void> {
    if (this.proc?.running) {
      process.kill(-this.proc.pid, 'SIGKILL');
      await this.proc.exited;
    }
  }

  async stop(): Promise<void> {
    this.supervised = undefined;
    await this.proc?.stop();
  }
}

/** Crash points armed at every activity boundary of these workflow types, and where each firing is recorded. */
export function crashEverywhere(t: TestStack, phase: string, ...workflowTypes: string[]): Record<string, string> {
  return {
    KEC_CRASH_POINTS: workflowTypes.map((w) => `${w}/*`).join(','),
    KEC_CRASH_MARKER_DIR: join(t.stack.logsDir, `crash-markers-${phase}`),
  };
}

/** The boundaries where the worker was killed (one marker each), as "<WorkflowType>.<activity>". */
export function crashedAt(env: Record<string, string>): string[] {
  const dir = env.KEC_CRASH_MARKER_DIR;
  return existsSync(dir)
    ? readdirSync(dir)
        .map((f) => f.replace(/^crashed-/, ''))
        .sort()
    : [];
}

/** crashedAt, logged (one line per boundary, after `label: ` when given): what a crash test covered, in its output. */
export function reportCrashes(env: Record<string, string>, label?: string): string[] {
  const hit = crashedAt(env);
  const line = label ? `\n  ${label}: ` : '\n  ';
  console.log(`crash boundaries covered (${hit.length}):${line}${hit.join(line)}`);
  return hit;
}

export async function kubectl(
  t: TestStack,
  ...args: string[]
): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const r = await run(bins.kubectl, ['--kubeconfig', t.stack.kubeconfig, ...args]);
    return { ...r, code: 0 };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; code?: number };
    return { stdout: err.stdout ?? '', stderr: err.stderr ?? '', code: err.code ?? 1 };
  }
}

export interface ClusterView extends Omit<EtcdClusterObject, 'status' | 'metadata'> {
  status: Partial<EtcdClusterStatus> & Record<string, unknown>;
  metadata: EtcdClusterObject['metadata'] & { uid: string };
}

export function clusters(t: TestStack) {
  const custom = t.kc.makeApiClient(CustomObjectsApi);
  return {
    async get(name: string, namespace = 'default'): Promise<ClusterView | undefined> {
      try {
        return (await custom.getNamespacedCustomObject({ ...resource, namespace, name })) as ClusterView;
      } catch (e) {
        if ((e as { code?: number }).code === 404) return undefined;
        throw e;
      }
    },
    create(body: Record<string, unknown>, namespace = 'default') {
      return custom.createNamespacedCustomObject({ ...resource, namespace, body });
    },
    /** An EtcdCluster of this name and spec (the usual start of a test or bench case). Plain unless the spec has
     *  `tls` (new clusters default to TLS): the tests' etcdctl and fault tools talk plain HTTP to members. */
    createFromSpec(name: string, spec: Record<string, unknown>, namespace = 'default') {
      return this.create(
        { apiVersion, kind, metadata: { name }, spec: { tls: { enabled: false }, ...spec } },
        namespace,
      );
    },
    patchSpec(name: string, spec: Record<string, unknown>, namespace = 'default') {
      return custom.patchNamespacedCustomObject({ ...resource, namespace, name, body: { spec } }, mergePatch());
    },
    delete(name: string, namespace = 'default') {
      return custom.deleteNamespacedCustomObject({ ...resource, namespace, name });
    },
  };
}

/** The tests' deadline for one etcd call: far above a healthy call under load, so only a silent member hits it. */
const etcdCallTimeoutMs = 15000;

/** TLS clusters' endpoints (https://<pod IP>:2379) → the users' client certificate (<cluster>-client-tls). */
const tlsByEndpoint = new Map<string, TlsCredentials>();

/** An etcd client as a user would make it: with the cluster's client certificate when its endpoints are TLS, and as
 *  an etcd user when given one (spec.auth). */
export function etcdClient(hosts: string[], dialTimeout = 3000, auth?: { username: string; password: string }): Etcd3 {
  const creds = hosts.map((h) => tlsByEndpoint.get(h)).find(Boolean);
  const options = {
    hosts,
    dialTimeout,
    // Every unary call ends: one to a frozen member (a stopped real node holds its connections open, silent) never
    // returns on its own, and a look at the cluster must fail and be retried rather than wait forever.
    defaultCallOptions: (c: { isStream: boolean }) => (c.isStream ? {} : { deadline: Date.now() + etcdCallTimeoutMs }),
    ...clientOptions(hosts, creds),
  };
  return auth ? etcdAs(options, auth) : new Etcd3(options);
}

/** Member pods of a cluster and the etcd member list, as one comparable picture. */
export async function membership(t: TestStack, cluster: string, namespace = 'default') {
  const pods = (await t.core.listNamespacedPod({ namespace, labelSelector: memberSelector(cluster) })).items.filter(
    (p) => !p.metadata?.deletionTimestamp,
  );
  const tls = pods.some(isTlsPod);
  const creds = tls
    ? await readTlsSecret(t.core, { namespace, name: cluster }, clientTlsSecretName(cluster))
    : undefined;
  const ips = pods.filter((p) => p.status?.podIP).map((p) => `${tls ? 'https' : 'http'}://${p.status!.podIP}:2379`);
  for (const ip of creds ? ips : []) tlsByEndpoint.set(ip, creds!);
  const client = etcdClient(ips);
  try {
    const list = await client.cluster.memberList({});
    const leaderStatus = await client.maintenance.status();
    const revision = leaderStatus.header.revision;
    const leader = list.members.find((m) => m.ID === leaderStatus.leader);
    // Each member answering on its own endpoint (a stale status or pod phase is not enough).
    const answering = await Promise.all(
      ips.map(async (ip) => {
        const one = etcdClient([ip], 2000);
        try {
          await one.maintenance.status({ deadline: Date.now() + 5000 });
          return true;
        } catch {
          return false;
        } finally {
          one.close();
        }
      }),
    );
    return {
      healthy: answering.filter(Boolean).length,
      pods: pods.map((p) => p.metadata!.name!).sort(),
      members: list.members.map((m) => m.name || `(unstarted ${m.peerURLs[0]})`).sort(),
      learners: list.members.filter((m) => m.isLearner).length,
      leader: leader?.name,
      revision,
      ips,
    };
  } finally {
    client.close();
  }
}

/** One look: the membership picture when the cluster has `size` ready members, every member answers on
 *  its own endpoint, etcd's member list equals the member pods and the status says Running; else
 *  undefined (or etcd's error when no member answers). */
export async function convergedNow(t: TestStack, cluster: string, size: number) {
  const c = await clusters(t).get(cluster);
  if (c?.status?.phase !== 'Running' || c.status.readyMembers !== size) return undefined;
  const m = await membership(t, cluster);
  if (
    m.pods.length !== size ||
    m.healthy !== size ||
    m.learners ||
    JSON.stringify(m.pods) !== JSON.stringify(m.members)
  )
    return undefined;
  return m;
}

/** One look: convergedNow's picture when `gone` (a deleted member pod) is not among the members; else undefined. */
export async function convergedNowWithout(t: TestStack, cluster: string, size: number, gone: string) {
  const m = await convergedNow(t, cluster, size);
  return m && !m.pods.includes(gone) ? m : undefined;
}

/** Waits until convergedNow holds. */
export async function converged(t: TestStack, cluster: string, size: number, timeoutMs = 180000) {
  return eventually(`${cluster} converged to ${size} members`, () => convergedNow(t, cluster, size), timeoutMs, 1000);
}

/** Waits until the cluster has converged to `size` members again, `gone` (a deleted member pod) not among them. */
export async function convergedWithout(
  t: TestStack,
  cluster: string,
  size: number,
  gone: string,
  what: string,
  timeoutMs: number,
) {
  return eventually(
    what,
    async () => {
      const x = await converged(t, cluster, size);
      return x.pods.includes(gone) ? undefined : x;
    },
    timeoutMs,
  );
}

/** Waits until a cluster created with spec.restore says what it was restored from and has converged to `size`. */
export async function restoredCopy(
  t: TestStack,
  cluster: string,
  size: number,
  timeoutMs: number,
  intervalMs = 1000,
): Promise<ClusterView> {
  return eventually(
    `${cluster} restored`,
    async () => {
      const c = await clusters(t).get(cluster);
      return c?.status.restoredFrom && (await convergedNow(t, cluster, size)) ? c : undefined;
    },
    timeoutMs,
    intervalMs,
  );
}

export async function writeKeys(endpoints: string[], prefix: string, n: number): Promise<void> {
  const client = etcdClient(endpoints, 3000);
  try {
    for (let i = 0; i < n; i++) await client.put(`${prefix}/${i}`).value(`v${i}`);
  } finally {
    client.close();
  }
}

/** Reads every key back with a linearizable read; returns the keys that are missing or wrong. */
export async function missingKeys(endpoints: string[], prefix: string, n: number): Promise<string[]> {
  const client = etcdClient(endpoints, 3000);
  try {
    const all = await client.getAll().prefix(`${prefix}/`).strings();
    return Array.from({ length: n }, (_, i) => `${prefix}/${i}`).filter((k, i) => all[k] !== `v${i}`);
  } finally {
    client.close();
  }
}

/** A client writing sequential keys through all member endpoints, with ordinary retries. With a
 *  function for endpoints it follows membership changes (as a client behind a service would). */
export class ContinuousWriter {
  acked: number[] = [];
  failed = 0;
  /** Client requests that failed, retried ones included (a write counts in `failed` only when every retry failed). */
  errors = 0;
  /** The etcd user to write as (spec.auth); set while running, the client takes it at its next failed write. */
  auth?: { username: string; password: string };
  private stopped = false;
  private loop?: Promise<void>;
  constructor(
    private readonly endpoints: string[] | (() => Promise<string[]>),
    private readonly prefix: string,
    /** A deadline per write: a put on a connection to a frozen member (stopped node) never returns without one. */
    private readonly callTimeoutMs?: number,
  ) {}

  start(): void {
    const resolve = async () => (typeof this.endpoints === 'function' ? this.endpoints() : this.endpoints);
    this.loop = (async () => {
      // No endpoint yet (a cluster converged in etcd's view a moment before its pods' readiness probes passed):
      // wait for one rather than fail, as a client would.
      let hosts: string[] = [];
      for (;;) {
        hosts = await resolve().catch(() => []);
        if (hosts.length || this.stopped) break;
        await new Promise((r) => setTimeout(r, 300));
      }
      if (!hosts.length) return;
      let client = etcdClient(hosts, 2000, this.auth);
      let asUser = this.auth;
      let refreshed = Date.now();
      for (let i = 0; !this.stopped; i++) {
        let ok = false;
        for (let attempt = 0; attempt < 10 && !ok; attempt++) {
          try {
            const call = this.callTimeoutMs ? { deadline: Date.now() + this.callTimeoutMs } : undefined;
            await client.put(`${this.prefix}/${i}`).value(String(i)).options(call);
            ok = true;
          } catch {
            this.errors++;
            await new Promise((r) => setTimeout(r, 300));
          }
          if (!ok || (typeof this.endpoints === 'function' && Date.now() - refreshed > 2000)) {
            const next = await resolve().catch(() => hosts);
            if ((next.length && next.join() !== hosts.join()) || (!ok && asUser !== this.auth)) {
              client.close();
              hosts = next.length ? next : hosts;
              asUser = this.auth;
              client = etcdClient(hosts, 2000, asUser);
            }
            refreshed = Date.now();
          }
        }
        if (ok) this.acked.push(i);
        else this.failed++;
        await new Promise((r) => setTimeout(r, 20));
      }
      client.close();
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /** Acknowledged writes that cannot be read back. */
  async lost(endpoints: string[]): Promise<number[]> {
    const client = etcdClient(endpoints, 3000, this.auth);
    try {
      const all = await client.getAll().prefix(`${this.prefix}/`).strings();
      return this.acked.filter((i) => all[`${this.prefix}/${i}`] !== String(i));
    } finally {
      client.close();
    }
  }
}

/** A started writer that follows the cluster's membership (as a client behind its Service would), keys under `<cluster>/`. */
export function clusterWriter(t: TestStack, cluster: string): ContinuousWriter {
  const writer = new ContinuousWriter(
    async () => (await membership(t, cluster).catch(() => ({ ips: [] as string[] }))).ips,
    cluster,
  );
  writer.start();
  return writer;
}

/** A test stack with the controller running and its CRD served: the setup of every end-to-end file. */
export async function startStackWithController(
  env: Record<string, string> = {},
  stack: Partial<StackOptions> = {},
): Promise<{ t: TestStack; ctl: TestController }> {
  const t = await startTestStack({ nodes: 3, ...stack });
  const ctl = new TestController(t);
  ctl.start(env);
  await eventually('EtcdCluster CRD served', async () => (await kubectl(t, 'get', 'etcdclusters')).code === 0, 60000);
  return { t, ctl };
}

/** A test file's stack with the controller: started before its tests (handed to `use`), stopped after them,
 *  once `beforeStop` has undone what the file changed. Call at the top level of the file. */
export function stackWithControllerPerFile(
  use: (s: { t: TestStack; ctl: TestController }) => void,
  opts: {
    env?: () => Promise<Record<string, string>>;
    beforeStop?: () => Promise<unknown>;
    stack?: Partial<StackOptions>;
  } = {},
): void {
  let s: { t: TestStack; ctl: TestController } | undefined;
  beforeAll(async () => {
    s = await startStackWithController(await opts.env?.(), opts.stack);
    use(s);
  });
  afterAll(async () => {
    if (s) await opts.beforeStop?.();
    await s?.ctl.stop();
    await s?.t.stop();
  });
}

/** A backup destination on the stack's S3 server, its credentials in the Secret `s3-creds` (created once). */
export async function s3Destination(t: TestStack, prefix: string, namespace = 'default') {
  const s3 = t.stack.s3;
  await t.core
    .createNamespacedSecret({
      namespace,
      body: {
        metadata: { name: 's3-creds' },
        stringData: { accessKeyID: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      },
    })
    .catch((e: { code?: number }) => {
      if (e.code !== 409) throw e;
    });
  return { endpoint: s3.podEndpoint, bucket: s3.bucket, prefix, credentialsSecret: 's3-creds' };
}

/** The CLI as a user runs it against the test stack: its exit code and its output (stdout, then stderr). */
export async function runCli(t: TestStack, ...args: string[]): Promise<{ code: number; out: string }> {
  const [cmd, ...rest] = tsEntry('cli/main.ts', ...args);
  const env = {
    ...process.env,
    NODE_OPTIONS: '',
    KUBECONFIG: t.stack.kubeconfig,
    TEMPORAL_ADDRESS: t.stack.temporalAddress,
  };
  try {
    const r = await promisify(execFile)(cmd, rest, { env });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: err.code ?? 1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}
