// Host-side helpers of the real-node stack: its identity (ids, addresses, cgroup roots, all derived from
// the stack's state folder so a cleanup after a killed run finds the same names), and the teardown that
// leaves the host as it was. Everything a stack's nodes change lives in one network + mount namespace
// (a "holder" process); on the host there are only its veth, one route, prohibit routes of faults and
// the nodes' cgroup roots.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface RealNet {
  octet: number;
}

export const cgroupBase = '/sys/fs/cgroup';

export class RealNodesLayout {
  readonly id: string;
  constructor(
    readonly dir: string, // <stack state>/nodes
    readonly count: number,
  ) {
    this.id = createHash('sha1').update(dir).digest('hex').slice(0, 4);
  }
  get netFile(): string {
    return join(this.dir, 'net.json');
  }
  /** The host end of the veth into the stack's network namespace. */
  get hostVeth(): string {
    return `kecrv${this.id}`;
  }
  nodeName(n: number): string {
    return `node-${n}`;
  }
  nodeNames(): string[] {
    return Array.from({ length: this.count }, (_, i) => this.nodeName(i + 1));
  }
  nodeDir(n: number): string {
    return join(this.dir, `n${n}`);
  }
  /** Node N's containerd root (its images, made from the machine's seed at each start: seed.ts). */
  containerdRoot(n: number): string {
    return join(this.nodeDir(n), 'containerd', 'root');
  }
  /** The throwaway containerd's folder that builds an image seed (seed.ts) with this stack's namespace. */
  get seedDir(): string {
    return join(this.dir, 'seed');
  }
  /** Node N's kubelet --root-dir (pods' volumes under pods/<uid>/volumes/<plugin>/<name>). */
  kubeletDir(n: number): string {
    return join(this.nodeDir(n), 'kubelet');
  }
  /** Node N's volumes (local-path-provisioner's folder for it). */
  volumes(n: number): string {
    return join(this.dir, 'volumes', this.nodeName(n));
  }
  cgroupRoot(n: number): string {
    return `kecr${this.id}n${n}`;
  }
  bridge(n: number): string {
    return `kecrb${this.id}${n}`;
  }
  socket(n: number): string {
    return join(this.nodeDir(n), 'containerd.sock');
  }
  /** v1 hierarchies the kubelet needs its cgroup root in (every mounted one but cgroup2, unless `all`:
   *  the kubelet also makes its tree in the hybrid host's cgroup2, which teardown removes). */
  hierarchies(all = false): string[] {
    return readdirSync(cgroupBase)
      .filter((h) => (all || h !== 'unified') && statSync(join(cgroupBase, h)).isDirectory())
      .map((h) => join(cgroupBase, h));
  }
}

/** Addresses: pods of node N in 10.<o>.N.0/24 (gateway .1, also the node's IP); 10.<o>.255.0/30 links the host
 *  (.1, where pods find the apiserver and Temporal) to the stack's namespace (.2: kube-proxy, CoreDNS). */
export class RealAddresses {
  constructor(readonly octet: number) {}
  get cidr(): string {
    return `10.${this.octet}.0.0/16`;
  }
  get host(): string {
    return `10.${this.octet}.255.1`;
  }
  get inner(): string {
    return `10.${this.octet}.255.2`;
  }
  nodeIP(n: number): string {
    return `10.${this.octet}.${n}.1`;
  }
  podCIDR(n: number): string {
    return `10.${this.octet}.${n}.0/24`;
  }
}

/** A free 10.X/16: on no host interface or route (other stacks and their fault routes). */
export async function pickOctet(id: string): Promise<number> {
  const { stdout } = await run('sh', ['-c', 'ip -o -4 addr; ip -4 route show table all']);
  const used = new Set([...stdout.matchAll(/(?:inet |^|\s)10\.(\d+)\./gm)].map((m) => Number(m[1])));
  let o = 64 + ((parseInt(id, 16) + 61) % 128);
  while (used.has(o)) o = o >= 250 ? 64 : o + 1;
  return o;
}

/** This process and its ancestors (a clean-up started as `npx tsx cleanup.ts <dir>` must not kill its parents). */
function selfAndAncestors(): Set<number> {
  const out = new Set<number>();
  for (let pid = process.pid; pid > 1 && !out.has(pid);) {
    out.add(pid);
    try {
      pid = Number(
        readFileSync(`/proc/${pid}/stat`, 'utf8')
          .replace(/^.*\) /, '')
          .split(' ')[1],
      );
    } catch {
      break;
    }
  }
  return out;
}

/** Pids whose command line names `path` (components, shims, the holder), never this process or its parents. */
export function pidsNaming(path: string): number[] {
  const out: number[] = [];
  const self = selfAndAncestors();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || self.has(Number(d))) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(path)) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

function cgroupDirs(root: string): string[] {
  // Deepest first, so rmdir works bottom-up.
  const out: string[] = [];
  const walk = (d: string) => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return; // removed meanwhile (a pod's cgroup going away while the walk reads it)
    }
    for (const e of entries) if (e.isDirectory()) walk(join(d, e.name));
    out.push(d);
  };
  if (existsSync(root)) walk(root);
  return out;
}

/** Pids in a cgroup subtree (any v1 hierarchy shows all of them; pids is mounted everywhere here). */
export function cgroupPids(layout: RealNodesLayout, n: number): number[] {
  const pids = new Set<number>();
  for (const h of layout.hierarchies())
    for (const d of cgroupDirs(join(h, layout.cgroupRoot(n)))) {
      try {
        for (const l of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) if (l) pids.add(Number(l));
      } catch {
        /* removed meanwhile */
      }
    }
  return [...pids];
}

export function setFrozen(layout: RealNodesLayout, n: number, frozen: boolean): void {
  const f = join(cgroupBase, 'freezer', layout.cgroupRoot(n), 'freezer.state');
  if (existsSync(f)) writeFileSync(f, frozen ? 'FROZEN' : 'THAWED');
}

export function createCgroupRoots(layout: RealNodesLayout): void {
  for (let n = 1; n <= layout.count; n++)
    for (const h of layout.hierarchies()) {
      const d = join(h, layout.cgroupRoot(n));
      mkdirSync(d, { recursive: true });
      if (h.endsWith('/cpuset')) {
        // A new cpuset has no cpus/mems: a task cannot join it until they are copied from the parent.
        for (const f of ['cpuset.cpus', 'cpuset.mems'])
          if (!readFileSync(join(d, f), 'utf8').trim()) writeFileSync(join(d, f), readFileSync(join(h, f)));
      }
    }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function kill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* gone */
  }
}

/**
 * Removes everything a real-node stack left on the host, whether it stopped cleanly or was killed:
 * thaws and kills its pods' processes (by cgroup), kills every process naming its folder (kubelets,
 * containerds, shims, kube-proxy, CoreDNS, the namespace holder: the namespaces and their mounts,
 * bridges, nft/iptables rules and sysctls die with it), then removes its prohibit routes and cgroups.
 * Returns what it found, for the log.
 */
export async function cleanupRealNodes(stackDir: string, count = 3): Promise<string[]> {
  const layout = new RealNodesLayout(join(stackDir, 'nodes'), count);
  const found: string[] = [];
  for (let n = 1; n <= count; n++) setFrozen(layout, n, false);
  const named = pidsNaming(layout.dir);
  for (const p of named) kill(p, 'SIGCONT'); // a stopped node's kubelet
  for (let round = 0; round < 50; round++) {
    const pods = Array.from({ length: count }, (_, i) => cgroupPids(layout, i + 1)).flat();
    const procs = pidsNaming(layout.dir);
    if (!pods.length && !procs.length) break;
    if (round === 0) found.push(`killed ${pods.length} pod processes, ${procs.length} node processes`);
    for (const p of [...pods, ...procs]) kill(p, 'SIGKILL');
    await sleep(100);
  }
  if (existsSync(layout.netFile)) {
    const { octet } = JSON.parse(readFileSync(layout.netFile, 'utf8')) as RealNet;
    const a = new RealAddresses(octet);
    const { stdout } = await run('ip', ['route', 'show', 'type', 'prohibit']).catch(() => ({ stdout: '' }));
    for (const m of stdout.matchAll(new RegExp(`^prohibit (10\\.${octet}\\.\\S+)`, 'gm'))) {
      await run('ip', ['route', 'del', 'prohibit', m[1]]).catch(() => undefined);
      found.push(`route prohibit ${m[1]}`);
    }
    await run('ip', ['route', 'del', a.cidr]).catch(() => undefined);
  }
  // The veth dies with the namespace; only a holder that never got a namespace leaves it.
  if (
    await run('ip', ['link', 'del', layout.hostVeth]).then(
      () => true,
      () => false,
    )
  )
    found.push(`link ${layout.hostVeth}`);
  for (let n = 1; n <= count; n++)
    for (const h of layout.hierarchies(true))
      for (const d of cgroupDirs(join(h, layout.cgroupRoot(n)))) {
        for (let i = 0; i < 20; i++) {
          try {
            rmdirSync(d);
            break;
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code === 'ENOENT') break;
            await sleep(100); // EBUSY while the last killed task exits
          }
        }
        if (existsSync(d)) found.push(`cgroup ${d} still busy`);
      }
  return found;
}
