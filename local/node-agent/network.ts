// Pod networking: one network namespace per pod, a veth pair into one bridge per agent, a private
// /16 that only exists on this machine. Host processes reach pods through the bridge address.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';

const run = promisify(execFile);

export interface Sandbox {
  key: string; // the pod uid
  index: number;
  ip: string;
  netns?: string; // absent in loopback fallback mode
  hostVeth?: string;
}

interface NetState {
  octet: number;
  next: number;
  sandboxes: Record<string, Sandbox>;
}

export class PodNetwork {
  readonly id: string;
  readonly bridge: string;
  mode: 'netns' | 'loopback' = 'netns';
  private state: NetState;
  private readonly file: string;
  /** Pod addresses the host is cut from (routes to remove on teardown). */
  private readonly hostCut = new Set<string>();

  constructor(
    stateDir: string,
    private readonly log: Logger,
  ) {
    this.id = createHash('sha1').update(stateDir).digest('hex').slice(0, 4);
    this.bridge = `kecbr${this.id}`;
    this.file = join(stateDir, 'network.json');
    this.state = existsSync(this.file)
      ? JSON.parse(readFileSync(this.file, 'utf8'))
      : { octet: 0, next: 0, sandboxes: {} };
  }

  get gateway(): string {
    return this.mode === 'netns' ? `10.${this.state.octet}.0.1` : '127.0.0.1';
  }
  get cidr(): string {
    return `10.${this.state.octet}.0.0/16`;
  }
  private get nsPrefix(): string {
    return `kec${this.id}-`;
  }

  private save(): void {
    writeFileSync(this.file, JSON.stringify(this.state, null, 2));
  }

  /** Creates the bridge (or finds it from an earlier run of this agent). */
  async setup(): Promise<void> {
    try {
      if (!this.state.octet) this.state.octet = await this.pickOctet();
      if (!(await linkExists(this.bridge))) {
        await ip('link', 'add', this.bridge, 'type', 'bridge');
        await ip('addr', 'add', `${this.gateway}/16`, 'dev', this.bridge);
      }
      await ip('link', 'set', this.bridge, 'up');
      await ip('netns', 'add', `${this.nsPrefix}probe`);
      await ip('netns', 'del', `${this.nsPrefix}probe`);
      this.log.info({ bridge: this.bridge, cidr: this.cidr }, 'pod network ready');
    } catch (e) {
      this.mode = 'loopback';
      this.log.warn(
        { err: (e as Error).message },
        'network namespaces unavailable: falling back to one loopback address per pod (pods share the host network; network faults are not possible)',
      );
    }
    this.save();
  }

  private async pickOctet(): Promise<number> {
    const { stdout } = await run('ip', ['-o', '-4', 'addr']);
    const used = new Set([...stdout.matchAll(/inet 10\.(\d+)\./g)].map((m) => Number(m[1])));
    let o = 64 + (parseInt(this.id, 16) % 128);
    while (used.has(o)) o = o >= 250 ? 64 : o + 1;
    return o;
  }

  sandbox(key: string): Sandbox | undefined {
    return this.state.sandboxes[key];
  }
  sandboxes(): Sandbox[] {
    return Object.values(this.state.sandboxes);
  }

  /** The pod's address, chosen at once (synchronously) when the pod reaches this agent: the hosts files of
   *  pods bound in the same burst name it before any of their containers starts (Go caches /etc/hosts 5 s, so
   *  a peer missing at a container's first lookup stays unresolved that long). */
  reserve(key: string): Sandbox {
    let sb = this.state.sandboxes[key];
    if (!sb) {
      const used = new Set(Object.values(this.state.sandboxes).map((s) => s.index));
      let index = this.state.next;
      while (used.has(index)) index = (index + 1) % 60000;
      this.state.next = (index + 1) % 60000;
      const host = `${Math.floor(index / 250)}.${(index % 250) + 2}`;
      sb =
        this.mode === 'netns'
          ? {
              key,
              index,
              ip: `10.${this.state.octet}.${host}`,
              netns: `${this.nsPrefix}${index}`,
              hostVeth: `kv${this.id}${index.toString(36)}`,
            }
          : { key, index, ip: `127.77.${host}` };
      this.state.sandboxes[key] = sb;
      this.save();
    }
    return sb;
  }

  /** Creates the pod's namespace and address; idempotent, so an agent restart keeps the pod's IP. */
  async createSandbox(key: string): Promise<Sandbox> {
    const sb = this.reserve(key);
    if (sb.netns && !existsSync(`/run/netns/${sb.netns}`)) {
      const peer = `kp${this.id}${sb.index.toString(36)}`;
      await ip('link', 'del', sb.hostVeth!).catch(() => undefined);
      await ip('netns', 'add', sb.netns);
      await ip('link', 'add', sb.hostVeth!, 'type', 'veth', 'peer', 'name', peer);
      await ip('link', 'set', peer, 'netns', sb.netns);
      await ip('link', 'set', sb.hostVeth!, 'master', this.bridge, 'up');
      await ip('-n', sb.netns, 'link', 'set', peer, 'name', 'eth0');
      await ip('-n', sb.netns, 'addr', 'add', `${sb.ip}/16`, 'dev', 'eth0');
      await ip('-n', sb.netns, 'link', 'set', 'eth0', 'up');
      await ip('-n', sb.netns, 'link', 'set', 'lo', 'up');
      await ip('-n', sb.netns, 'route', 'add', 'default', 'via', this.gateway);
    }
    if (sb.netns) {
      const etc = `/etc/netns/${sb.netns}`;
      mkdirSync(etc, { recursive: true });
      // No DNS server: names come from the hosts file; fail fast on anything else.
      writeFileSync(join(etc, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
      if (!existsSync(join(etc, 'hosts'))) writeFileSync(join(etc, 'hosts'), '127.0.0.1 localhost\n');
    }
    return sb;
  }

  /** Rewrites the pod's /etc/hosts in place (the same inode stays bind-mounted in running containers). */
  writeHosts(sb: Sandbox, content: string): void {
    if (!sb.netns) return;
    const file = `/etc/netns/${sb.netns}/hosts`;
    if (existsSync(file) && readFileSync(file, 'utf8') === content) return;
    writeFileSync(file, content);
  }

  async removeSandbox(key: string): Promise<void> {
    const sb = this.state.sandboxes[key];
    if (!sb) return;
    if (sb.netns) {
      await ip('netns', 'del', sb.netns).catch(() => undefined);
      await ip('link', 'del', sb.hostVeth!).catch(() => undefined);
      rmSync(`/etc/netns/${sb.netns}`, { recursive: true, force: true });
    }
    delete this.state.sandboxes[key];
    this.save();
  }

  /** Fault helper: the pod can no longer reach or be reached by anything. */
  async cut(key: string, connected: boolean): Promise<void> {
    const sb = this.state.sandboxes[key];
    if (!sb?.hostVeth) throw new Error(`pod ${key} has no network namespace (loopback mode): cannot cut its network`);
    await ip('link', 'set', sb.hostVeth, connected ? 'up' : 'down');
  }

  /** Fault helper: processes on this host (the controller, the node agent's probes) can no longer reach the
   *  pod, while pods still reach each other over the bridge (a route, not a link: bridged traffic skips it). */
  async cutHost(key: string, connected: boolean): Promise<void> {
    const sb = this.state.sandboxes[key];
    if (!sb?.netns)
      throw new Error(`pod ${key} has no network namespace (loopback mode): cannot cut the host's path to it`);
    if (connected) {
      await ip('route', 'del', 'prohibit', `${sb.ip}/32`).catch(() => undefined);
      this.hostCut.delete(sb.ip);
      return;
    }
    this.hostCut.add(sb.ip);
    await ip('route', 'replace', 'prohibit', `${sb.ip}/32`);
  }

  /** Removes every namespace, veth and the bridge this agent made. Address assignments are kept,
   *  so pods that still exist get their old IPs back when the agent starts again. */
  async teardown(): Promise<void> {
    for (const addr of this.hostCut) await ip('route', 'del', 'prohibit', `${addr}/32`).catch(() => undefined);
    for (const sb of Object.values(this.state.sandboxes)) {
      if (!sb.netns) continue;
      await ip('netns', 'del', sb.netns).catch(() => undefined);
      await ip('link', 'del', sb.hostVeth!).catch(() => undefined);
      rmSync(`/etc/netns/${sb.netns}`, { recursive: true, force: true });
    }
    if (existsSync('/run/netns')) {
      for (const ns of readdirSync('/run/netns').filter((n) => n.startsWith(this.nsPrefix))) {
        await ip('netns', 'del', ns).catch(() => undefined);
        rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
      }
    }
    await ip('link', 'del', this.bridge).catch(() => undefined);
  }

  /** Forgets sandboxes whose pods no longer exist. */
  async prune(live: Set<string>): Promise<void> {
    for (const key of Object.keys(this.state.sandboxes)) if (!live.has(key)) await this.removeSandbox(key);
  }
}

async function ip(...args: string[]): Promise<void> {
  try {
    await run('ip', args);
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`, { cause: e });
  }
}

async function linkExists(name: string): Promise<boolean> {
  try {
    await run('ip', ['link', 'show', name]);
    return true;
  } catch {
    return false;
  }
}
