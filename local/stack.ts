// The local stack: control-plane etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// the Temporal dev server and (optionally) real nodes (kubelet + containerd, local/real-nodes), all real processes.
// Tests start their own stacks on free ports in temporary folders; `npm start` uses .local/.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { createServer, connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { bins } from './toolchain.js';
import { ManagedProcess, isAlive, signalGroup, sleep, waitFor } from './process.js';
import { RealNodes } from './real-nodes/nodes.js';
import { expiresAt, issue, newCA, type CertPair } from '../activities/pki.js';

const execFileAsync = promisify(execFile);

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export interface StackPorts {
  etcdClient: number;
  etcdPeer: number;
  apiserver: number;
  controllerManager: number;
  scheduler: number;
  temporal: number;
  temporalUi: number;
  /** The S3 server (versitygw) on loopback; pods reach it as s3Hosts[0]:9000. */
  s3: number;
}

/** Where pods find the stack's S3 server (path-style addressing: no per-bucket host names). */
export const s3Hosts = ['s3.s3.svc', 's3.s3.svc.cluster.local'];
export const s3PodPort = 9000;

/** `<name>.<namespace>[.svc…]` → the Service it names. */
const serviceOf = (host: string) => {
  const [name, namespace] = host.split('.');
  return { name, namespace };
};

/** The stack's S3 server: its address for host processes and for pods, the root credentials, one bucket. */
export interface StackS3 {
  endpoint: string;
  podEndpoint: string;
  region: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** Where pods find Temporal (deploy/controller.yaml's TEMPORAL_ADDRESS). */
export const temporalHosts = [
  'temporal-frontend.temporal.svc',
  'temporal-frontend.temporal.svc.cluster.local',
  'temporal-frontend.temporal',
];

export const defaultPorts: StackPorts = {
  etcdClient: 12379,
  etcdPeer: 12380,
  apiserver: 6443,
  controllerManager: 10257,
  scheduler: 10259,
  temporal: 7233,
  temporalUi: 8233,
  s3: 19000,
};

export interface StackOptions {
  stateDir: string;
  /** 'default' uses the well-known ports above; 'free' picks unused ones (test stacks). */
  ports?: 'default' | 'free';
  /** Real nodes (kubelet + containerd each, local/real-nodes); 0 starts none. */
  nodes?: number;
  /** Serve the Temporal Web UI (default true). */
  ui?: boolean;
  /** cert-manager's CRDs installed and its controller running (CA issuer; no webhook), for spec.tls.issuerRef. */
  certManager?: boolean;
  /** Extra flags for kube-controller-manager. */
  controllerManagerArgs?: string[];
  log?: (msg: string) => void;
}

interface StackRecord {
  pids: number[];
  ports: StackPorts;
  startedAt: string;
}

export class LocalStack {
  readonly kubeconfig: string;
  readonly temporalAddress: string;
  readonly uiUrl: string | undefined;
  readonly apiserverUrl: string;
  readonly logsDir: string;
  readonly s3: StackS3;
  private procs: ManagedProcess[] = [];
  /** The real nodes (when any): fault helpers and timings. */
  realNodes?: RealNodes;
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly opts: Required<Pick<StackOptions, 'stateDir'>> & StackOptions,
    readonly ports: StackPorts,
  ) {
    this.kubeconfig = join(opts.stateDir, 'kubeconfig');
    this.temporalAddress = `127.0.0.1:${ports.temporal}`;
    this.uiUrl = opts.ui === false ? undefined : `http://127.0.0.1:${ports.temporalUi}`;
    this.apiserverUrl = `https://127.0.0.1:${ports.apiserver}`;
    this.logsDir = join(opts.stateDir, 'logs');
    this.s3 = {
      endpoint: `http://127.0.0.1:${ports.s3}`,
      podEndpoint: `http://${s3Hosts[0]}:${s3PodPort}`,
      region: 'us-east-1',
      bucket: 'etcd-backups',
      ...s3Keys(opts.stateDir),
    };
  }

  static async start(opts: StackOptions): Promise<LocalStack> {
    const stateDir = resolve(opts.stateDir);
    mkdirSync(join(stateDir, 'logs'), { recursive: true });
    checkNotRunning(stateDir);
    for (const [what, path] of Object.entries({
      'kube-apiserver': bins.kubeApiserver,
      temporal: bins.temporal,
      etcd: bins.controlPlaneEtcd,
      versitygw: bins.versitygw,
    })) {
      if (!existsSync(path)) throw new Error(`${what} is not built (${path} missing): run \`npm run toolchain\` first`);
    }
    for (let attempt = 1; ; attempt++) {
      const ports = opts.ports === 'free' ? await freePorts() : defaultPorts;
      await checkPortsFree(ports);
      const stack = new LocalStack({ ...opts, stateDir }, ports);
      try {
        await stack.boot();
        return stack;
      } catch (e) {
        await stack.stop();
        // Free ports are picked, then bound by each component (Temporal picks its inner ones the same way): a stack
        // starting at the same moment (two test files at once) can take one in between. Start again on other
        // ports, the attempt's logs kept beside.
        if (opts.ports !== 'free' || attempt >= 3 || !stack.lostAPort()) throw e;
        const kept = join(stateDir, `logs-attempt-${attempt}`);
        renameSync(stack.logsDir, kept);
        mkdirSync(stack.logsDir);
        stack.log(`a port was taken meanwhile (logs in ${kept}): starting again on other ports`);
      }
    }
  }

  /** Whether a component failed because its port was taken. */
  private lostAPort(): boolean {
    return readdirSync(this.logsDir)
      .filter((f) => f.endsWith('.log'))
      .some((f) => /address already in use/i.test(readFileSync(join(this.logsDir, f), 'utf8')));
  }

  private log(msg: string): void {
    (this.opts.log ?? (() => undefined))(msg);
  }

  private spawn(name: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): ManagedProcess {
    const p = new ManagedProcess({ name, cmd, args, logFile: join(this.logsDir, `${name}.log`), env, cwd: repoRoot });
    this.procs.push(p);
    this.record();
    return p;
  }

  private record(): void {
    const rec: StackRecord = {
      pids: [...this.procs.map((p) => p.pid), ...(this.realNodes?.pids() ?? [])],
      ports: this.ports,
      startedAt: new Date().toISOString(),
    };
    writeFileSync(join(this.opts.stateDir, 'stack.json'), JSON.stringify(rec, null, 2));
  }

  logFile(name: string): string {
    return join(this.logsDir, `${name}.log`);
  }

  private async boot(): Promise<void> {
    const { stateDir } = this.opts;
    const p = this.ports;
    const pki = ensurePki(stateDir);
    const clientCa = await ensureClientCA(pki.dir);
    const nodes = this.opts.nodes ?? 0;
    // Real kubelets serve with certificates of the stack's CA and ask the apiserver (webhook) who may call them;
    // the apiserver checks their certificate and calls them with its own client certificate.
    const kubeletClient = nodes > 0 ? await ensureKubeletClientCert(pki.dir, clientCa) : undefined;
    const t0 = Date.now();

    const etcd = this.spawn('etcd', bins.controlPlaneEtcd, [
      '--name',
      'cp',
      '--data-dir',
      join(stateDir, 'etcd'),
      '--log-level',
      'warn',
      '--unsafe-no-fsync',
      '--listen-client-urls',
      `http://127.0.0.1:${p.etcdClient}`,
      '--advertise-client-urls',
      `http://127.0.0.1:${p.etcdClient}`,
      '--listen-peer-urls',
      `http://127.0.0.1:${p.etcdPeer}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${p.etcdPeer}`,
      '--initial-cluster',
      `cp=http://127.0.0.1:${p.etcdPeer}`,
      '--listen-metrics-urls',
      '',
    ]);
    const temporalArgs = [
      'server',
      'start-dev',
      '--ip',
      '127.0.0.1',
      '--port',
      String(p.temporal),
      '--db-filename',
      join(stateDir, 'temporal.db'),
      // SQLite's default rollback journal syncs every transaction twice: with 50 clusters' workflows at once the dev
      // server's writes queued behind fsyncs. WAL stays consistent across a killed process (the crash tests).
      '--sqlite-pragma',
      'journal_mode=wal',
      '--sqlite-pragma',
      'synchronous=normal',
      '--log-format',
      'json',
      '--log-level',
      'warn',
    ];
    temporalArgs.push(...(this.uiUrl ? ['--ui-ip', '127.0.0.1', '--ui-port', String(p.temporalUi)] : ['--headless']));
    // Temporal needs nothing from Kubernetes: start it now so both boot in parallel.
    const temporal = this.spawn('temporal', bins.temporal, temporalArgs);
    // The S3 server: a directory served on loopback only; metadata in a sidecar folder (no xattrs needed).
    mkdirSync(join(stateDir, 's3', 'data'), { recursive: true });
    mkdirSync(join(stateDir, 's3', 'meta'), { recursive: true });
    const s3 = this.spawn(
      's3',
      bins.versitygw,
      [
        '--port',
        `127.0.0.1:${p.s3}`,
        '--region',
        this.s3.region,
        '--quiet',
        'posix',
        '--sidecar',
        join(stateDir, 's3', 'meta'),
        join(stateDir, 's3', 'data'),
      ],
      { ...process.env, ROOT_ACCESS_KEY_ID: this.s3.accessKeyId, ROOT_SECRET_ACCESS_KEY: this.s3.secretAccessKey },
    );

    await waitFor('control-plane etcd', () => httpOk(`http://127.0.0.1:${p.etcdClient}/health`), 30000, {
      proc: etcd,
      logFile: this.logFile('etcd'),
    });
    this.log(`etcd ready (${Date.now() - t0} ms)`);

    const apiserver = this.spawn('kube-apiserver', bins.kubeApiserver, [
      `--etcd-servers=http://127.0.0.1:${p.etcdClient}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${p.apiserver}`,
      '--advertise-address=127.0.0.1',
      '--endpoint-reconciler-type=none',
      `--cert-dir=${pki.dir}`,
      `--token-auth-file=${pki.tokens}`,
      `--client-ca-file=${join(pki.dir, 'client-ca.crt')}`,
      '--authorization-mode=Node,RBAC',
      // A kubelet changes only its own Node and the pods bound to it (with the Node authorizer above).
      '--enable-admission-plugins=NodeRestriction',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${pki.saPub}`,
      `--service-account-signing-key-file=${pki.saKey}`,
      '--service-cluster-ip-range=10.96.0.0/24',
      '--allow-privileged=true',
      '--profiling=false',
      '--v=1',
      '--enable-priority-and-fairness=false',
      '--max-requests-inflight=0',
      '--max-mutating-requests-inflight=0',
      '--event-ttl=1h',
      // Real nodes share a host name but each has its own IP (its bridge's address).
      '--kubelet-preferred-address-types=InternalIP',
      ...(kubeletClient
        ? [
            `--kubelet-certificate-authority=${join(pki.dir, 'client-ca.crt')}`,
            `--kubelet-client-certificate=${kubeletClient.cert}`,
            `--kubelet-client-key=${kubeletClient.key}`,
          ]
        : []),
    ]);
    await waitFor('kube-apiserver', () => httpOk(`${this.apiserverUrl}/readyz`), 90000, {
      proc: apiserver,
      logFile: this.logFile('kube-apiserver'),
    });
    this.log(`kube-apiserver ready (${Date.now() - t0} ms)`);

    const ca = readFileSync(join(pki.dir, 'apiserver.crt'));
    const kc = (user: string, cred: Credential, file: string, server = this.apiserverUrl) => {
      writeKubeconfig(file, server, ca, user, cred);
      return file;
    };
    const tok = (user: string) => ({ token: pki.tokenOf[user] });
    kc('admin', tok('admin'), this.kubeconfig);
    const kcmKc = kc('kube-controller-manager', tok('kcm'), join(stateDir, 'kcm.kubeconfig'));
    const schedKc = kc('kube-scheduler', tok('scheduler'), join(stateDir, 'scheduler.kubeconfig'));

    const certManager = this.opts.certManager ? this.startCertManager() : Promise.resolve();
    const kcm = this.spawn('kube-controller-manager', bins.kubeControllerManager, [
      `--kubeconfig=${kcmKc}`,
      `--authentication-kubeconfig=${kcmKc}`,
      `--authorization-kubeconfig=${kcmKc}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${p.controllerManager}`,
      '--leader-elect=false',
      `--service-account-private-key-file=${pki.saKey}`,
      `--root-ca-file=${join(pki.dir, 'apiserver.crt')}`,
      '--use-service-account-credentials=true',
      '--controllers=*',
      '--profiling=false',
      '--v=1',
      // Notice a stopped node in seconds rather than the default 40 s.
      '--node-monitor-period=2s',
      '--node-monitor-grace-period=20s',
      ...(this.opts.controllerManagerArgs ?? []),
    ]);
    writeFileSync(
      join(stateDir, 'scheduler.yaml'),
      [
        'apiVersion: kubescheduler.config.k8s.io/v1',
        'kind: KubeSchedulerConfiguration',
        'clientConnection:',
        `  kubeconfig: ${schedKc}`,
        'leaderElection:',
        '  leaderElect: false',
        '',
      ].join('\n'),
    );
    const sched = this.spawn('kube-scheduler', bins.kubeScheduler, [
      `--config=${join(stateDir, 'scheduler.yaml')}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${p.scheduler}`,
      `--authentication-kubeconfig=${schedKc}`,
      `--authorization-kubeconfig=${schedKc}`,
      '--v=1',
    ]);
    await Promise.all([
      waitFor('kube-controller-manager', () => httpOk(`https://127.0.0.1:${p.controllerManager}/healthz`), 60000, {
        proc: kcm,
        logFile: this.logFile('kube-controller-manager'),
      }),
      waitFor('kube-scheduler', () => httpOk(`https://127.0.0.1:${p.scheduler}/healthz`), 60000, {
        proc: sched,
        logFile: this.logFile('kube-scheduler'),
      }),
      waitFor('temporal dev server', () => tcpOpen(p.temporal), 60000, {
        proc: temporal,
        logFile: this.logFile('temporal'),
      }),
      waitFor('s3 server', () => tcpOpen(p.s3), 30000, { proc: s3, logFile: this.logFile('s3') }).then(() =>
        ensureBucket(this.s3),
      ),
      certManager,
    ]);
    if (this.uiUrl)
      await waitFor('temporal web ui', () => httpOk(this.uiUrl!), 30000, {
        proc: temporal,
        logFile: this.logFile('temporal'),
      });
    this.log(`controller-manager, scheduler, temporal ready (${Date.now() - t0} ms)`);
    // Pods are admitted only once the controller-manager made their namespace's ServiceAccount: real nodes from the
    // image seed are up before it exists in `default` (a first `kubectl run` would be refused).
    const serviceAccount = waitFor(
      'the default ServiceAccount',
      () =>
        this.kubectl(10000, '-n', 'default', 'get', 'serviceaccount/default').then(
          () => true,
          () => false,
        ),
      60000,
      { proc: kcm, logFile: this.logFile('kube-controller-manager'), intervalMs: 200 },
    );
    serviceAccount.catch(() => undefined); // awaited below, after the nodes: not an unhandled rejection meanwhile

    if (nodes > 0) {
      this.realNodes = new RealNodes({
        stackDir: stateDir,
        count: nodes,
        apiserverPort: p.apiserver,
        hostServices: [
          { ...serviceOf('kubernetes.default'), portName: 'https', port: 443, hostPort: p.apiserver },
          { ...serviceOf(temporalHosts[0]), portName: 'grpc', port: 7233, hostPort: p.temporal },
          { ...serviceOf(s3Hosts[0]), portName: 'http', port: s3PodPort, hostPort: p.s3 },
        ],
        kubeconfig: async (file, user, server) =>
          kc(user, certIdentities[user] ? await issue(clientCa, certIdentities[user]) : tok(user), file, server),
        adminKubeconfig: this.kubeconfig,
        caFile: join(pki.dir, 'client-ca.crt'),
        servingCert: (node, ip) =>
          issue(clientCa, { commonName: node, hosts: [node, ip], usages: ['server'], days: 365 }),
        apiserverKubeletUser: kubeletClientUser,
        logsDir: this.logsDir,
        // Every stack that backs up runs the backup tool's image: built from the current sources and imported.
        projectImages: process.env.KEC_REAL_PROJECT_IMAGES !== '0',
        log: (m) => this.log(m),
      });
      try {
        await this.realNodes.start();
      } finally {
        this.record();
      }
      this.log(`real nodes ready (${Date.now() - t0} ms)`);
    }
    await serviceAccount;
  }

  /** cert-manager as a process (local/toolchain/cert-manager/main.go: the controllers a CA Issuer needs) once its
   *  CRDs (the module's deploy/crds) are established; no webhook: objects are checked by the CRDs' schemas only. */
  private async startCertManager(): Promise<void> {
    if (!existsSync(bins.certManager))
      throw new Error(`cert-manager is not built (${bins.certManager} missing): run \`npm run toolchain\` first`);
    await this.kubectl(60000, 'apply', '--server-side', '-f', bins.certManagerCrds);
    await this.kubectl(60000, 'wait', '--for=condition=Established', '--timeout=60s', '-f', bins.certManagerCrds);
    this.spawn('cert-manager', bins.certManager, ['--kubeconfig', this.kubeconfig]);
  }

  /** The toolchain's kubectl as the stack's admin, stopped after timeoutMs. */
  private kubectl(timeoutMs: number, ...args: string[]) {
    return execFileAsync(bins.kubectl, ['--kubeconfig', this.kubeconfig, ...args], { timeout: timeoutMs });
  }

  /** Stops every component, last started first, and waits for each to exit. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.realNodes?.stop();
      for (const p of [...this.procs].reverse()) await p.stop(10000);
      rmSync(join(this.opts.stateDir, 'stack.json'), { force: true });
    })();
    return this.stopping;
  }

  /** Restarts one component (e.g. the apiserver) with the same arguments; crash: SIGKILL, no clean-up. */
  async restart(name: string, opts: { crash?: boolean } = {}): Promise<void> {
    const i = this.procs.findIndex((p) => p.opts.name === name);
    if (i < 0) throw new Error(`no component named ${name}`);
    const old = this.procs[i];
    if (opts.crash) {
      signalGroup(old.pid, 'SIGKILL');
      await old.exited;
    } else await old.stop();
    this.procs[i] = new ManagedProcess(old.opts);
    this.record();
  }

  component(name: string): ManagedProcess | undefined {
    return this.procs.find((p) => p.opts.name === name);
  }
}

function checkNotRunning(stateDir: string): void {
  const file = join(stateDir, 'stack.json');
  if (!existsSync(file)) return;
  const rec = JSON.parse(readFileSync(file, 'utf8')) as StackRecord;
  const alive = rec.pids.filter((pid) => pid > 0 && isAlive(pid));
  if (alive.length > 0) {
    throw new Error(
      `a stack is already running from ${stateDir} (pids ${alive.join(', ')}, started ${rec.startedAt}): ` +
        `stop it with Ctrl-C in its terminal (or \`kill ${alive.join(' ')}\`), or use another state folder`,
    );
  }
  // A stack that died without cleaning up: its processes are gone, its data is kept.
  rmSync(file);
}

interface Pki {
  dir: string;
  tokens: string;
  saKey: string;
  saPub: string;
  tokenOf: Record<string, string>;
}

function ensurePki(stateDir: string): Pki {
  const dir = join(stateDir, 'pki');
  mkdirSync(dir, { recursive: true });
  const saKey = join(dir, 'sa.key');
  const saPub = join(dir, 'sa.pub');
  if (!existsSync(saKey)) {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(saKey, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(saPub, publicKey.export({ type: 'spki', format: 'pem' }));
  }
  const tokens = join(dir, 'tokens.csv');
  const users = {
    admin: ['admin', 'system:masters'],
    kcm: ['system:kube-controller-manager', ''],
    scheduler: ['system:kube-scheduler', ''],
    // Real nodes: CoreDNS with its own role (kubelets and kube-proxy: client certificates, certIdentities).
    coredns: ['system:coredns', ''],
    localpath: ['system:local-path-provisioner', ''],
  } as Record<string, readonly [string, string]>;
  const tokenOf: Pki['tokenOf'] = existsSync(join(dir, 'tokens.json'))
    ? JSON.parse(readFileSync(join(dir, 'tokens.json'), 'utf8'))
    : {};
  for (const k of Object.keys(users)) tokenOf[k] ??= randomBytes(24).toString('hex');
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify(tokenOf), { mode: 0o600 });
  writeFileSync(
    tokens,
    Object.entries(users)
      .map(([k, [user, group]], i) => `${tokenOf[k]},${user},uid-${i}${group ? `,"${group}"` : ''}`)
      .join('\n') + '\n',
    { mode: 0o600 },
  );
  return { dir, tokens, saKey, saPub, tokenOf };
}

/** Who authenticates with a client certificate of the stack's client CA (CN = user, O = group): each real
 *  node's kubelet as its node (Node authorizer, NodeRestriction), kube-proxy as system:kube-proxy (the
 *  default system:node-proxier binding). */
const certIdentities: Record<string, { commonName: string; organization?: string; usages: 'client'[]; days: number }> =
  {
    proxy: { commonName: 'system:kube-proxy', usages: ['client'], days: 365 },
    ...Object.fromEntries(
      Array.from({ length: 9 }, (_, i) => [
        `node${i + 1}`,
        { commonName: `system:node:node-${i + 1}`, organization: 'system:nodes', usages: ['client'], days: 365 },
      ]),
    ),
  };

/** Who the apiserver is to real kubelets (their webhook authorizer asks RBAC: system:kubelet-api-admin). */
const kubeletClientUser = 'kube-apiserver-kubelet-client';

/** The apiserver's client certificate for calls to kubelets (logs, exec), kept in the state folder and made again
 *  at a start within 30 days of its expiry (the kubelets' own certificates are issued at every start). */
async function ensureKubeletClientCert(dir: string, ca: CertPair): Promise<{ cert: string; key: string }> {
  const files = { cert: join(dir, 'apiserver-kubelet-client.crt'), key: join(dir, 'apiserver-kubelet-client.key') };
  const fresh = (pem: string) => expiresAt(pem).getTime() - Date.now() > 30 * 24 * 3600_000;
  if (!existsSync(files.cert) || !existsSync(files.key) || !fresh(readFileSync(files.cert, 'utf8'))) {
    const c = await issue(ca, { commonName: kubeletClientUser, usages: ['client'], days: 365 });
    writeFileSync(files.key, c.key, { mode: 0o600 });
    writeFileSync(files.cert, c.cert);
  }
  return files;
}

/** The stack's client CA, made once per state folder: the apiserver trusts the certificates it signs. */
async function ensureClientCA(dir: string): Promise<CertPair> {
  const cert = join(dir, 'client-ca.crt');
  const key = join(dir, 'client-ca.key');
  if (!existsSync(key) || !existsSync(cert)) {
    const ca = await newCA('kube-etcd-controller local stack client CA', 3650);
    writeFileSync(cert, ca.cert);
    writeFileSync(key, ca.key, { mode: 0o600 });
  }
  return { cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') };
}

/** The S3 root credentials, made once per state folder. */
function s3Keys(stateDir: string): { accessKeyId: string; secretAccessKey: string } {
  const file = join(stateDir, 'pki', 's3.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8'));
  mkdirSync(dirname(file), { recursive: true });
  const keys = {
    accessKeyId: `kec${randomBytes(8).toString('hex')}`,
    secretAccessKey: randomBytes(24).toString('hex'),
  };
  writeFileSync(file, JSON.stringify(keys), { mode: 0o600 });
  return keys;
}

/** The stack's bucket; "already yours" is success. */
async function ensureBucket(s3: StackS3): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'; // node 20 is supported until 2027
  const { S3Client, CreateBucketCommand } = await import('@aws-sdk/client-s3');
  const c = new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  });
  try {
    await c.send(new CreateBucketCommand({ Bucket: s3.bucket }));
  } catch (e) {
    if (!/BucketAlreadyOwnedByYou|BucketAlreadyExists/.test((e as Error).name)) throw e;
  } finally {
    c.destroy();
  }
}

type Credential = { token: string } | CertPair;

function writeKubeconfig(file: string, server: string, ca: Buffer, user: string, cred: Credential): void {
  // Off loopback (real nodes reach the apiserver through a forward), the name in the apiserver's certificate.
  const tlsName = new URL(server).hostname === '127.0.0.1' ? [] : ['    tls-server-name: kubernetes'];
  writeFileSync(
    file,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: local',
      '  cluster:',
      `    server: ${server}`,
      `    certificate-authority-data: ${ca.toString('base64')}`,
      ...tlsName,
      'users:',
      `- name: ${user}`,
      '  user:',
      ...('token' in cred
        ? [`    token: ${cred.token}`]
        : [
            `    client-certificate-data: ${Buffer.from(cred.cert).toString('base64')}`,
            `    client-key-data: ${Buffer.from(cred.key).toString('base64')}`,
          ]),
      'contexts:',
      '- name: local',
      '  context:',
      '    cluster: local',
      `    user: ${user}`,
      'current-context: local',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
}

/** GET url; true on a 2xx answer. Certificates are not checked: this only probes liveness. */
export function httpOk(url: string): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const req = (url.startsWith('https') ? httpsRequest : httpRequest)(
      url,
      { rejectUnauthorized: false, timeout: 3000 },
      (res) => {
        res.resume();
        resolvePromise((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300);
      },
    );
    req.on('error', () => resolvePromise(false));
    req.on('timeout', () => {
      req.destroy();
      resolvePromise(false);
    });
    req.end();
  });
}

export function tcpOpen(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const s = connect({ port, host, timeout: 2000 });
    s.on('connect', () => {
      s.destroy();
      resolvePromise(true);
    });
    s.on('error', () => resolvePromise(false));
    s.on('timeout', () => {
      s.destroy();
      resolvePromise(false);
    });
  });
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const srv = createServer();
    srv.once('error', () => resolvePromise(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolvePromise(true)));
  });
}

async function checkPortsFree(ports: StackPorts): Promise<void> {
  const taken: string[] = [];
  for (const [name, port] of Object.entries(ports)) if (!(await portFree(port))) taken.push(`${name} ${port}`);
  if (taken.length) {
    throw new Error(
      `port(s) already in use on 127.0.0.1: ${taken.join(', ')}. Another stack or program holds them: ` +
        'stop it, or start a test stack with free ports',
    );
  }
}

/** An unused loopback port (closed again: a later listener may take it, so take it soon). */
export const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as import('node:net').AddressInfo;
      s.close(() => resolve(port));
    });
  });

async function freePorts(): Promise<StackPorts> {
  const keys = Object.keys(defaultPorts) as (keyof StackPorts)[];
  const out = {} as StackPorts;
  const servers = await Promise.all(
    keys.map(
      () =>
        new Promise<import('node:net').Server>((res) => {
          const s = createServer();
          s.listen(0, '127.0.0.1', () => res(s));
        }),
    ),
  );
  keys.forEach((k, i) => {
    out[k] = (servers[i].address() as import('node:net').AddressInfo).port;
  });
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return out;
}

/** Kills whatever a crashed stack in stateDir left running (used by CI cleanup). */
export function killRecordedStack(stateDir: string): void {
  const file = join(stateDir, 'stack.json');
  if (!existsSync(file)) return;
  const rec = JSON.parse(readFileSync(file, 'utf8')) as StackRecord;
  for (const pid of rec.pids) if (pid > 0 && isAlive(pid)) signalGroup(pid, 'SIGKILL');
}

export { sleep };
