// Real nodes for the local stack: per node a containerd (+ runc shims) and a kubelet with its own identity,
// cgroup root, pod CIDR and CNI bridge; per stack one kube-proxy (nftables), one CoreDNS and a volume
// provisioner (rancher's local-path-provisioner, local-path.ts). All node processes share one network + mount namespace of their own (held by a sleeping
// "holder"), so their bridges, nft/iptables rules, forwarding sysctl, /run, /var/lib and /var/log writes
// and mounts never touch the host's and vanish with it. The host keeps a veth into that namespace (10.X.255.1),
// a route to the pods' 10.X/16, forwards to the apiserver and Temporal on 10.X.255.1, and the cgroup roots.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, DiscoveryV1Api, KubeConfig, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { ensureProjectImages } from '../images/build.js';
import { imagesDir } from '../images/catalog.js';
import { ManagedProcess, sleep, waitFor, type ManagedProcessOptions } from '../process.js';
// A cycle (stack.ts starts RealNodes), safe: tcpOpen is only called long after both modules loaded.
import { tcpOpen } from '../stack.js';
import { pins, toolsDir } from '../toolchain.js';
import {
  containerdToml,
  type ContainerdPaths,
  corefile,
  cniConflist,
  kubeProxyYaml,
  kubeletSysctls,
  kubeletYaml,
  registryHosts,
} from './configs.js';
import {
  RealAddresses,
  RealNodesLayout,
  cleanupRealNodes,
  cgroupPids,
  createCgroupRoots,
  pickOctet,
  setFrozen,
  type RealNet,
} from './host.js';
import { ctrBin, NodeHost } from './node-host.js';
import { rootFromSeed, seedName, seedsDir, withSeed } from './seed.js';
import { ensureLocalPathObjects, helperPod, localPath, localPathArgs, localPathConfig } from './local-path.js';

const run = promisify(execFile);

export const realBins = {
  kubelet: join(toolsDir, `k8s-node-v${pins.K8S_VERSION}`, 'kubelet'),
  kubeProxy: join(toolsDir, `k8s-node-v${pins.K8S_VERSION}`, 'kube-proxy'),
  containerd: join(toolsDir, `containerd-v${pins.CONTAINERD_VERSION}`, 'containerd'),
  ctr: ctrBin,
  coredns: join(toolsDir, `coredns-v${pins.COREDNS_VERSION}`, 'coredns'),
  localPathProvisioner: localPath.bin,
};

export interface RealNodesOptions {
  stackDir: string;
  count: number;
  apiserverPort: number;
  /** Host services pods reach through a Service of theirs (the apiserver's `default/kubernetes` included): each
   *  Service's EndpointSlice points at a forward on 10.X.255.1:<hostPort> to the host's 127.0.0.1:<hostPort>. */
  hostServices: HostService[];
  /** Writes a kubeconfig for `user` (`node<n>`, `proxy`: a client certificate; else a token) against `server`. */
  kubeconfig: (file: string, user: string, server: string) => Promise<string>;
  adminKubeconfig: string;
  /** The stack's CA: it signs the kubelets' serving certificates and the apiserver's client certificate. */
  caFile: string;
  servingCert: (node: string, ip: string) => Promise<{ cert: string; key: string }>;
  /** The apiserver's user when it calls a kubelet (logs, exec, port-forward). */
  apiserverKubeletUser: string;
  logsDir: string;
  /** Also import the project's controller and backup-tool images, built first when missing or stale (120 MB each;
   *  the backup tool runs in every cluster with spec.backup, the controller in in-cluster tests). */
  projectImages?: boolean;
  log: (msg: string) => void;
}

export interface HostService {
  namespace: string;
  name: string;
  portName: string;
  /** The Service's port (what pods dial). */
  port: number;
  /** The host's loopback port it forwards to. */
  hostPort: number;
}

export class RealNodes extends NodeHost {
  readonly procs: ManagedProcess[] = [];
  private holder?: ManagedProcess;
  private servers: Server[] = [];
  private sockets = new Set<Socket>();
  private stopping?: Promise<void>;
  readonly timings: Record<string, number> = {};

  constructor(readonly opts: RealNodesOptions) {
    super(new RealNodesLayout(join(opts.stackDir, 'nodes'), opts.count));
  }

  static missingBinaries(): string[] {
    return Object.values(realBins).filter((b) => !existsSync(b));
  }

  /** A process inside the stack's namespace. */
  private inNamespace(name: string, args: string[], env: NodeJS.ProcessEnv = {}): ManagedProcessOptions {
    return {
      name,
      cmd: 'nsenter',
      args: ['-t', String(this.holder!.pid), '-m', '-n', '--', ...args],
      logFile: join(this.opts.logsDir, `${name}.log`),
      env: {
        ...process.env,
        PATH: `${join(toolsDir, `containerd-v${pins.CONTAINERD_VERSION}`)}:/usr/sbin:/usr/bin:/sbin:/bin`,
        ...env,
      },
    };
  }

  private spawn(name: string, args: string[], env: NodeJS.ProcessEnv = {}): ManagedProcess {
    const p = new ManagedProcess(this.inNamespace(name, args, env));
    this.procs.push(p);
    return p;
  }

  pids(): number[] {
    return [...(this.holder ? [this.holder.pid] : []), ...this.procs.map((p) => p.pid)];
  }

  async start(): Promise<void> {
    const t0 = Date.now();
    const l = this.layout;
    const missing = RealNodes.missingBinaries();
    if (missing.length)
      throw new Error(`real nodes need ${missing.join(', ')}: run \`bash local/toolchain/install.sh real-nodes\``);
    if (this.opts.projectImages) await ensureProjectImages(this.opts.log); // never import a stale one
    // A killed earlier run of this folder: its leftovers first.
    await cleanupRealNodes(this.opts.stackDir, this.opts.count);
    mkdirSync(l.dir, { recursive: true });
    const net: RealNet = existsSync(l.netFile)
      ? JSON.parse(readFileSync(l.netFile, 'utf8'))
      : { octet: await pickOctet(l.id) };
    writeFileSync(l.netFile, JSON.stringify(net));
    const a = (this.addr = new RealAddresses(net.octet));

    await this.startHolder();
    const pid = String(this.holder!.pid);
    await ip('link', 'add', l.hostVeth, 'type', 'veth', 'peer', 'name', 'kecns0', 'netns', pid);
    await ip('addr', 'add', `${a.host}/30`, 'dev', l.hostVeth);
    await ip('link', 'set', l.hostVeth, 'up');
    const inNs = ['nsenter', '-t', pid, '-n', '--'];
    const nsip = (...args: string[]) => run(inNs[0], [...inNs.slice(1), 'ip', ...args]);
    await nsip('addr', 'add', `${a.inner}/30`, 'dev', 'kecns0');
    await nsip('link', 'set', 'kecns0', 'up');
    for (let n = 1; n <= l.count; n++) {
      // The bridge exists before the kubelet, which binds the node's IP (its gateway address).
      await nsip('link', 'add', l.bridge(n), 'type', 'bridge');
      await nsip('addr', 'add', `${a.nodeIP(n)}/24`, 'dev', l.bridge(n));
      await nsip('link', 'set', l.bridge(n), 'up');
    }
    await run(inNs[0], [...inNs.slice(1), 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    await ip('route', 'add', a.cidr, 'via', a.inner);
    for (const svc of this.opts.hostServices) await this.forward(svc.hostPort);
    createCgroupRoots(l);
    this.timings.namespace = Date.now() - t0;

    const server = `https://${a.host}:${this.opts.apiserverPort}`;
    const proxyKc = await this.opts.kubeconfig(join(l.dir, 'kube-proxy.kubeconfig'), 'proxy', server);
    const dnsKc = await this.opts.kubeconfig(join(l.dir, 'coredns.kubeconfig'), 'coredns', server);
    const volumesKc = await this.opts.kubeconfig(join(l.dir, 'local-path.kubeconfig'), 'localpath', server);
    const kc = new KubeConfig();
    kc.loadFromFile(this.opts.adminKubeconfig);
    await this.clusterObjects(kc);
    await ensureLocalPathObjects(kc);

    await this.imagesFromSeed();
    await Promise.all(Array.from({ length: l.count }, (_, i) => this.bootNode(i + 1, server)));
    this.timings.containerdAndImages = Date.now() - t0;
    writeFileSync(join(l.dir, 'kube-proxy.yaml'), kubeProxyYaml(a, proxyKc));
    this.spawn('kube-proxy', [realBins.kubeProxy, `--config=${join(l.dir, 'kube-proxy.yaml')}`, '--v=1']);
    writeFileSync(join(l.dir, 'Corefile'), corefile(a, dnsKc));
    const dns = this.spawn('coredns', [realBins.coredns, '-conf', join(l.dir, 'Corefile')]);
    for (let n = 1; n <= l.count; n++) mkdirSync(l.volumes(n), { recursive: true });
    writeFileSync(join(l.dir, 'local-path.json'), localPathConfig(l));
    writeFileSync(join(l.dir, 'local-path-helper-pod.yaml'), helperPod);
    const prov = this.spawn('local-path-provisioner', localPathArgs(l, volumesKc));
    const core = kc.makeApiClient(CoreV1Api);
    await waitFor(
      `${l.count} real nodes Ready`,
      async () => {
        const nodes = (await core.listNode()).items;
        return this.nodeNames().every((n) =>
          nodes.some(
            (x) =>
              x.metadata?.name === n && x.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
          ),
        );
      },
      90000,
      { logFile: this.procs.find((p) => p.opts.name === 'kubelet-node-1')?.opts.logFile, intervalMs: 500 },
    );
    await waitFor('CoreDNS', () => tcpOpen(53, a.inner), 30000, { proc: dns, logFile: dns.opts.logFile });
    await waitFor(
      'local-path-provisioner',
      async () => readFileSync(prov.opts.logFile, 'utf8').includes('Started provisioner controller'),
      30000,
      { proc: prov, logFile: prov.opts.logFile },
    );
    this.timings.ready = Date.now() - t0;
    this.opts.log(`${l.count} real nodes ready (${JSON.stringify(this.timings)} ms)`);
  }

  private async startHolder(): Promise<void> {
    const ns = join(this.layout.dir, 'ns');
    mkdirSync(join(ns, 'sysctl'), { recursive: true });
    const binds = Object.entries(kubeletSysctls).map(([k, v]) => {
      const f = join(ns, 'sysctl', k.replace(/\//g, '.'));
      writeFileSync(f, `${v}\n`);
      return `mount --bind ${f} /proc/sys/${k}`;
    });
    const script = [
      'set -e',
      'S="$0"',
      'for d in run varlib varlog; do mkdir -p "$S/ns/$d"; done',
      'mount --bind "$S/ns/run" /run',
      'mount --bind "$S/ns/varlib" /var/lib',
      'mount --bind "$S/ns/varlog" /var/log',
      ...binds,
      'ip link set lo up',
      'touch "$S/ns/ready"',
      'exec -a "kec-real-nodes-holder $S" sleep infinity',
    ].join('\n');
    rmSync(join(ns, 'ready'), { force: true });
    this.holder = new ManagedProcess({
      name: 'nodes-namespace',
      cmd: 'unshare',
      args: ['--mount', '--net', '--propagation', 'private', '--', 'bash', '-c', script, this.layout.dir],
      logFile: join(this.opts.logsDir, 'nodes-namespace.log'),
    });
    await waitFor('node namespace', async () => existsSync(join(ns, 'ready')), 10000, {
      proc: this.holder,
      logFile: this.holder.opts.logFile,
      intervalMs: 50,
    });
  }

  private containerdPaths(n: number): ContainerdPaths {
    const l = this.layout;
    return { dir: l.nodeDir(n), root: l.containerdRoot(n), socket: l.socket(n), runcRoot: `n${n}` };
  }

  /** Every node's containerd root made from the machine's image seed (seed.ts), built first when missing. */
  private async imagesFromSeed(): Promise<void> {
    const t0 = Date.now();
    const archives = readdirSync(imagesDir)
      .filter((f) => f.endsWith('.tar') && (this.opts.projectImages || !f.startsWith('kube-etcd-controller_')))
      .map((f) => join(imagesDir, f));
    const name = seedName(this.opts.projectImages ? 'all' : 'catalog', archives, realBins.containerd);
    await withSeed(
      seedsDir,
      name,
      (root) => this.buildSeed(root, archives),
      async (seed, built) => {
        this.timings[built ? 'images-seed-built' : 'images-seed-found'] = Date.now() - t0;
        await Promise.all(
          this.layout.nodeNames().map(async (node, i) => {
            const t1 = Date.now();
            await rootFromSeed(seed, this.layout.containerdRoot(i + 1));
            this.timings[`images-${node}`] = Date.now() - t1;
          }),
        );
      },
      this.opts.log,
    );
  }

  /** A throwaway containerd in the stack's namespace, configured like a node's, imports the archives into `root`. */
  private async buildSeed(root: string, archives: string[]): Promise<void> {
    const c: ContainerdPaths = {
      dir: this.layout.seedDir,
      root,
      socket: join(this.layout.seedDir, 'containerd.sock'),
      runcRoot: 'seed',
    };
    rmSync(c.dir, { recursive: true, force: true });
    mkdirSync(c.dir, { recursive: true });
    writeFileSync(join(c.dir, 'containerd.toml'), containerdToml(c));
    this.opts.log(`containerd seed: importing ${archives.length} image archives into ${root}`);
    const ctrd = new ManagedProcess(
      this.inNamespace('containerd-seed', [realBins.containerd, '--config', join(c.dir, 'containerd.toml')]),
    );
    try {
      await waitFor('the seed containerd', async () => existsSync(c.socket), 30000, {
        proc: ctrd,
        logFile: ctrd.opts.logFile,
        intervalMs: 100,
      });
      const ctr = (...args: string[]) => run(realBins.ctr, ['--address', c.socket, '-n', 'k8s.io', ...args]);
      await Promise.all(archives.map((f) => ctr('images', 'import', '--platform', 'linux/amd64', f)));
      // ctr keeps an archive's name as written; the CRI looks images up by their normalized reference.
      const refs = (await ctr('images', 'ls', '-q')).stdout.split('\n');
      for (const ref of refs.filter((r) => r && !r.startsWith('sha256:'))) {
        const full = normalizedRef(ref);
        if (full !== ref && !refs.includes(full)) await ctr('images', 'tag', ref, full);
      }
    } finally {
      await ctrd.stop(10000);
      rmSync(c.dir, { recursive: true, force: true });
    }
  }

  private async bootNode(n: number, server: string): Promise<void> {
    const l = this.layout;
    const a = this.addr;
    const d = l.nodeDir(n);
    const name = l.nodeName(n);
    for (const sub of ['net.d', 'certs.d/_default', 'pod-logs', 'kubelet', 'pki'])
      mkdirSync(join(d, sub), { recursive: true });
    writeFileSync(join(d, 'containerd.toml'), containerdToml(this.containerdPaths(n)));
    writeFileSync(join(d, 'certs.d', '_default', 'hosts.toml'), registryHosts);
    writeFileSync(join(d, 'net.d', '10-kec.conflist'), cniConflist(l, a, n));
    const serving = await this.opts.servingCert(name, a.nodeIP(n));
    writeFileSync(join(d, 'pki', 'kubelet.key'), serving.key, { mode: 0o600 });
    writeFileSync(join(d, 'pki', 'kubelet.crt'), serving.cert);
    writeFileSync(join(d, 'kubelet.yaml'), kubeletYaml(l, a, n, this.opts.caFile));
    const ctrd = this.spawn(`containerd-${name}`, [realBins.containerd, '--config', join(d, 'containerd.toml')]);
    await waitFor(`containerd of ${name}`, async () => existsSync(l.socket(n)), 30000, {
      proc: ctrd,
      logFile: ctrd.opts.logFile,
      intervalMs: 100,
    });
    const kc = await this.opts.kubeconfig(join(d, 'kubelet.kubeconfig'), `node${n}`, server);
    this.spawn(`kubelet-${name}`, [
      realBins.kubelet,
      `--config=${join(d, 'kubelet.yaml')}`,
      `--kubeconfig=${kc}`,
      `--hostname-override=${name}`,
      `--node-ip=${a.nodeIP(n)}`,
      `--node-labels=topology.kubernetes.io/zone=zone-${n - 1}`,
      `--root-dir=${l.kubeletDir(n)}`,
      `--cert-dir=${join(d, 'pki')}`,
      '--v=1',
    ]);
  }

  /** What pods need from the cluster: the host services' Services pointing at the host's forwards, and CoreDNS's
   *  read access. */
  private async clusterObjects(kc: KubeConfig): Promise<void> {
    const core = kc.makeApiClient(CoreV1Api);
    const disc = kc.makeApiClient(DiscoveryV1Api);
    const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    const ok409 = (e: unknown) => {
      if ((e as { code?: number }).code !== 409) throw e;
    };
    for (const svc of this.opts.hostServices) {
      // `default/kubernetes` is the apiserver's own (409): only its EndpointSlice is ours.
      await core.createNamespace({ body: { metadata: { name: svc.namespace } } }).catch(ok409);
      await core
        .createNamespacedService({
          namespace: svc.namespace,
          body: { metadata: { name: svc.name }, spec: { ports: [{ name: svc.portName, port: svc.port }] } },
        })
        .catch(ok409);
      await disc
        .createNamespacedEndpointSlice({
          namespace: svc.namespace,
          body: {
            metadata: {
              name: `${svc.name}-host`,
              labels: {
                'kubernetes.io/service-name': svc.name,
                'endpointslice.kubernetes.io/managed-by': 'kube-etcd-controller.local',
              },
            },
            addressType: 'IPv4',
            endpoints: [{ addresses: [this.addr.host], conditions: { ready: true } }],
            ports: [{ name: svc.portName, port: svc.hostPort, protocol: 'TCP' }],
          },
        })
        .catch(ok409);
    }
    // The apiserver's calls to kubelets, as kubeadm grants them (kubelets authorize them by webhook).
    await rbac
      .createClusterRoleBinding({
        body: {
          metadata: { name: 'kube-apiserver-kubelet-api-admin' },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:kubelet-api-admin' },
          subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: this.opts.apiserverKubeletUser }],
        },
      })
      .catch(ok409);
    await rbac
      .createClusterRole({
        body: {
          metadata: { name: 'system:coredns' },
          rules: [
            { apiGroups: [''], resources: ['endpoints', 'services', 'pods', 'namespaces'], verbs: ['list', 'watch'] },
            { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
          ],
        },
      })
      .catch(ok409);
    await rbac
      .createClusterRoleBinding({
        body: {
          metadata: { name: 'system:coredns' },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:coredns' },
          subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'system:coredns' }],
        },
      })
      .catch(ok409);
  }

  /** Pods reach a host service on 10.X.255.1:<port>; this forwards it to the host's loopback. */
  private forward(port: number): Promise<void> {
    const server = createServer((down) => {
      const up = connect(port, '127.0.0.1');
      for (const s of [down, up]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      down.pipe(up).pipe(down);
      down.on('close', () => up.destroy());
      up.on('close', () => down.destroy());
    });
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.addr.host, () => resolve());
    });
  }

  /** Kubelets first (no pod is touched by them), then the pods' processes, then everything else; the
   *  namespace holder last, which takes the bridges, rules and mounts with it. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (let n = 1; n <= this.opts.count; n++) setFrozen(this.layout, n, false);
      for (const p of this.procs) if (p.running) process.kill(p.pid, 'SIGCONT');
      for (const p of this.procs.filter((x) => x.opts.name.startsWith('kubelet-'))) await p.stop(10000);
      for (let n = 1; n <= this.opts.count; n++) for (const pid of cgroupPids(this.layout, n)) killQuiet(pid);
      for (const p of [...this.procs].reverse()) await p.stop(5000);
      for (const s of this.sockets) s.destroy();
      await Promise.all(this.servers.map((s) => new Promise((r) => s.close(r))));
      await this.holder?.stop(2000);
      const left = await cleanupRealNodes(this.opts.stackDir, this.opts.count);
      if (left.length) this.opts.log(`real nodes: cleanup after stop found ${left.join('; ')}`);
    })();
    return this.stopping;
  }
}

/** Docker's normalization: `kube-etcd-controller/controller:dev` → `docker.io/kube-etcd-controller/controller:dev`. */
export function normalizedRef(ref: string): string {
  const [first, ...rest] = ref.split('/');
  if (rest.length && (first.includes('.') || first.includes(':') || first === 'localhost')) return ref;
  return rest.length ? `docker.io/${ref}` : `docker.io/library/${ref}`;
}

function killQuiet(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

export async function ip(...args: string[]): Promise<void> {
  try {
    await run('ip', args);
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`, { cause: e });
  }
}

export { sleep };
