// One worker per pod on our nodes: sandbox → volumes → init containers in order → containers,
// with restart policy, back-off, probes, in-place image changes, graceful deletion and a truthful
// status. Level-triggered: sync() may be called any number of times with the latest pod.
import type { ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { request } from 'node:http';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  setHeaderOptions,
  PatchStrategy,
  type CoreV1Api,
  type V1Container,
  type V1ContainerStatus,
  type V1Pod,
  type V1PodCondition,
  type V1Probe,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { containerArgv, containerEnv, launch, type LaunchSpec } from './containers.js';
import { catalogSummary, resolveImage, type Image } from './images.js';
import type { PodNetwork, Sandbox } from './network.js';
import { prepareVolumes, refreshSecretVolumes, VolumeNotReady } from './volumes.js';
import { isAlive, signalGroup, sleep } from '../process.js';

export interface AgentContext {
  core: CoreV1Api;
  log: Logger;
  network: PodNetwork;
  podsDir: string;
  logsDir: string;
  hostIP: string;
  nodeRunning(node: string): boolean;
  /** The agent is shutting down: start nothing new. */
  stopping(): boolean;
  hostsFor(pod: V1Pod): string;
  /** Environment every container gets (service variables), under the pod's own. */
  serviceEnv(): Record<string, string>;
  event(pod: V1Pod, type: 'Normal' | 'Warning', reason: string, message: string): void;
}

type State =
  | { kind: 'waiting'; reason: string; message?: string }
  | { kind: 'running'; startedAt: string }
  | { kind: 'terminated'; exitCode: number; reason: string; startedAt: string; finishedAt: string };

interface Persisted {
  pid?: number;
  image: string;
  restartCount: number;
  startedAt?: string;
  everStarted: boolean;
  /** Ephemeral containers run once: their end is kept across agent restarts. */
  exitCode?: number;
}

class Container {
  state: State = { kind: 'waiting', reason: 'ContainerCreating' };
  lastState?: State;
  image: string;
  pid?: number;
  child?: ChildProcess;
  exited?: Promise<void>;
  restartCount = 0;
  everStarted = false;
  ready = false;
  started = false;
  backoffUntil = 0;
  backoffSec = 0;
  generation = 0; // bumps on each start; probe loops of older runs stop
  killReason?: string;
  constructor(
    readonly name: string,
    readonly init: boolean,
    image: string,
    readonly ephemeral = false,
  ) {
    this.image = image;
  }
  get running(): boolean {
    return this.state.kind === 'running';
  }
}

const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
const backoffBase = 1; // seconds; the kubelet uses 10 s, a local stack wants faster feedback
const backoffMax = 20;
/** How often secret volumes are compared with their Secrets (the kubelet: about a minute; a local stack wants faster). */
const secretSyncMs = Number(process.env.KEC_AGENT_SECRET_SYNC_MS ?? 5000);

export class PodWorker {
  pod: V1Pod;
  private containers = new Map<string, Container>();
  private volumes?: Map<string, string>;
  private sandbox?: Sandbox;
  private busy = false;
  private again = false;
  private lastStatus = '';
  private waitingReason?: { reason: string; message: string };
  private startTime?: string;
  private deleted = false;
  /** A sandbox restart is under way: start nothing until it is done. */
  private holding = false;
  private retryTimer?: NodeJS.Timeout;
  private secretTimer?: NodeJS.Timeout;
  readonly dir: string;
  readonly logDir: string;
  private readonly log: Logger;

  constructor(
    private readonly ctx: AgentContext,
    pod: V1Pod,
  ) {
    this.pod = pod;
    const m = pod.metadata!;
    this.dir = join(ctx.podsDir, m.uid!);
    this.logDir = join(ctx.logsDir, `${m.namespace}_${m.name}_${m.uid!.slice(0, 8)}`);
    this.log = ctx.log.child({ pod: `${m.namespace}/${m.name}` });
    mkdirSync(this.dir, { recursive: true });
    this.adopt();
  }

  get key(): string {
    return this.pod.metadata!.uid!;
  }
  get node(): string {
    return this.pod.spec!.nodeName!;
  }
  get ip(): string | undefined {
    return this.sandbox?.ip;
  }
  get netns(): string | undefined {
    return this.sandbox?.netns;
  }
  /** Rewrites the hosts file of a pod whose sandbox exists (a new peer was named). */
  refreshHosts(): void {
    if (this.sandbox && !this.deleted) this.ctx.network.writeHosts(this.sandbox, this.ctx.hostsFor(this.pod));
  }
  containerPid(name?: string): number | undefined {
    const c = name ? this.containers.get(name) : [...this.containers.values()].find((x) => !x.init && x.running);
    return c?.running ? c.pid : undefined;
  }
  logFile(container: string): string {
    return join(this.logDir, `${container}.log`);
  }

  // --- persistence: an agent restart adopts live processes instead of starting duplicates ---
  private persist(): void {
    const out: Record<string, Persisted> = {};
    for (const c of this.containers.values()) {
      out[c.name] = {
        pid: c.running ? c.pid : undefined,
        image: c.image,
        restartCount: c.restartCount,
        startedAt: c.state.kind === 'running' ? c.state.startedAt : undefined,
        everStarted: c.everStarted,
        ...(c.ephemeral && c.state.kind === 'terminated' ? { exitCode: c.state.exitCode } : {}),
      };
    }
    writeFileSync(join(this.dir, 'runtime.json'), JSON.stringify({ startTime: this.startTime, containers: out }));
  }

  private adopt(): void {
    const file = join(this.dir, 'runtime.json');
    if (!existsSync(file)) return;
    const saved = JSON.parse(readFileSync(file, 'utf8')) as {
      startTime?: string;
      containers: Record<string, Persisted>;
    };
    this.startTime = saved.startTime;
    const specs = [
      ...(this.pod.spec?.initContainers ?? []).map((c) => [c, true] as const),
      ...(this.pod.spec?.containers ?? []).map((c) => [c, false] as const),
      ...(this.pod.spec?.ephemeralContainers ?? []).map((c) => [c, false] as const),
    ];
    for (const [spec, init] of specs) {
      const p = saved.containers[spec.name];
      if (!p) continue;
      const ephemeral = !!this.pod.spec?.ephemeralContainers?.some((e) => e.name === spec.name);
      const c = new Container(spec.name, init, p.image, ephemeral);
      c.restartCount = p.restartCount;
      c.everStarted = p.everStarted;
      if (p.pid && isAlive(p.pid)) {
        c.pid = p.pid;
        c.state = { kind: 'running', startedAt: p.startedAt ?? now() };
        c.started = true;
        c.generation++;
        c.exited = this.watchAdopted(c, c.generation);
        this.startProbes(c, spec);
        this.log.info({ container: c.name, pid: p.pid }, 'adopted running container');
      } else if (p.everStarted) {
        c.state = {
          kind: 'terminated',
          exitCode: p.exitCode ?? (init ? 0 : 137),
          reason: (p.exitCode ?? (init ? 0 : 137)) === 0 ? 'Completed' : 'Error',
          startedAt: p.startedAt ?? now(),
          finishedAt: now(),
        };
      }
      this.containers.set(spec.name, c);
    }
  }

  private async watchAdopted(c: Container, gen: number): Promise<void> {
    while (c.generation === gen && c.pid && isAlive(c.pid)) await sleep(500);
    // The exit code of a process we did not start is unknown.
    if (c.generation === gen) this.onExit(c, gen, 255, null);
  }

  // --- the sync loop ---
  sync(pod: V1Pod): void {
    if (pod.metadata?.uid !== this.key) return;
    this.pod = pod;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    void (async () => {
      try {
        do {
          this.again = false;
          await this.syncOnce();
        } while (this.again);
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'pod sync failed; will retry');
        this.retryLater(2000);
      } finally {
        this.busy = false;
      }
    })();
  }

  private syncSecrets(): void {
    if (this.deleted) return;
    refreshSecretVolumes(this.ctx.core, this.pod, this.dir).then(
      (changed) => changed.length && this.log.info({ volumes: changed }, 'secret volumes updated'),
      (e) => this.log.warn({ err: (e as Error).message }, 'secret volume sync failed; will retry'),
    );
  }

  private retryLater(ms: number): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.sync(this.pod), ms);
  }

  private async syncOnce(): Promise<void> {
    if (this.deleted || this.holding || this.ctx.stopping()) return;
    if (!this.ctx.nodeRunning(this.node)) return; // a stopped node does nothing, as a dead kubelet
    const pod = this.pod;
    if (pod.metadata?.deletionTimestamp) {
      await this.finishDeletion();
      return;
    }

    this.sandbox = await this.ctx.network.createSandbox(this.key);
    this.ctx.network.writeHosts(this.sandbox, this.ctx.hostsFor(pod));
    this.startTime ??= now();

    const specs = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
    const missing = specs.find((c) => !resolveImage(c.image!));
    if (missing) {
      const message = `image "${missing.image}" is not in the node agent's image catalog (known: ${catalogSummary()})`;
      if (this.waitingReason?.reason !== 'ErrImagePull')
        this.ctx.event(pod, 'Warning', 'Failed', `Failed to pull image "${missing.image}": ${message}`);
      this.waitingReason = { reason: 'ErrImagePull', message };
      await this.patchStatus();
      this.retryLater(5000);
      return;
    }
    if (!this.volumes) {
      try {
        this.volumes = await prepareVolumes(this.ctx.core, pod, this.dir);
        if (pod.spec?.volumes?.some((v) => v.secret))
          this.secretTimer ??= setInterval(() => this.syncSecrets(), secretSyncMs);
      } catch (e) {
        if (!(e instanceof VolumeNotReady)) throw e;
        this.waitingReason = { reason: 'ContainerCreating', message: e.message };
        await this.patchStatus();
        this.retryLater(1000);
        return;
      }
    }
    this.waitingReason = undefined;

    const policy = pod.spec?.restartPolicy ?? 'Always';
    // Init containers: in order, each to successful completion.
    for (const spec of pod.spec?.initContainers ?? []) {
      const c = this.container(spec, true);
      if (c.state.kind === 'terminated' && c.state.exitCode === 0) continue;
      if (c.running) {
        await this.patchStatus();
        return;
      }
      if (c.state.kind === 'terminated' && policy === 'Never') {
        await this.patchStatus();
        return;
      }
      await this.startWhenBackoffAllows(c, spec);
      await this.patchStatus();
      return;
    }
    for (const spec of pod.spec?.containers ?? []) {
      const c = this.container(spec, false);
      if (c.running && c.image !== spec.image) {
        this.ctx.event(
          pod,
          'Normal',
          'Killing',
          `Container ${spec.name} definition changed (image ${c.image} → ${spec.image}), will be restarted`,
        );
        await this.kill(c, 'image changed');
        // After the kill: its exit set a crash back-off (1 s when it ran < 30 s), and a new image is no crash.
        c.backoffUntil = 0;
        c.backoffSec = 0;
        c.image = spec.image!;
      }
      if (c.running) continue;
      if (c.state.kind === 'terminated') {
        const restart = policy === 'Always' || (policy === 'OnFailure' && c.state.exitCode !== 0);
        if (!restart) continue;
      }
      await this.startWhenBackoffAllows(c, spec);
    }
    // Ephemeral containers (kubectl debug, one-shot checks): each runs once, never restarted.
    for (const spec of pod.spec?.ephemeralContainers ?? []) {
      if (this.containers.has(spec.name) || !resolveImage(spec.image!)) continue;
      const c = new Container(spec.name, false, spec.image!, true);
      this.containers.set(spec.name, c);
      await this.start(c, spec as V1Container);
    }
    await this.patchStatus();
  }

  private container(spec: V1Container, init: boolean): Container {
    let c = this.containers.get(spec.name);
    if (!c) {
      c = new Container(spec.name, init, spec.image!);
      this.containers.set(spec.name, c);
    }
    return c;
  }

  private async startWhenBackoffAllows(c: Container, spec: V1Container): Promise<void> {
    const wait = c.backoffUntil - Date.now();
    if (wait > 0) {
      if (c.everStarted)
        c.state = {
          kind: 'waiting',
          reason: 'CrashLoopBackOff',
          message: `back-off ${c.backoffSec}s restarting failed container=${c.name} pod=${this.pod.metadata!.name}`,
        };
      this.retryLater(wait + 50);
      return;
    }
    await this.start(c, spec);
  }

  private launchSpec(spec: V1Container, image: Image, env: Record<string, string>, argv: string[]): LaunchSpec {
    const mounts = (spec.volumeMounts ?? []).flatMap((m) => {
      const host = this.volumes?.get(m.name);
      if (!host) return [];
      const hostPath = m.subPath ? join(host, m.subPath) : host;
      if (m.subPath) mkdirSync(hostPath, { recursive: true });
      return [{ hostPath, mountPath: m.mountPath, readOnly: m.readOnly }];
    });
    return {
      sandbox: this.sandbox!,
      hostname: this.pod.spec?.hostname ?? this.pod.metadata!.name!,
      image,
      argv,
      env,
      workingDir: spec.workingDir,
      mounts,
    };
  }

  private async start(c: Container, spec: V1Container): Promise<void> {
    const image = resolveImage(spec.image!)!;
    const env = {
      ...this.ctx.serviceEnv(),
      ...(await containerEnv(
        this.ctx.core,
        { ...this.pod, status: { ...this.pod.status, podIP: this.sandbox!.ip, hostIP: this.ctx.hostIP } },
        spec,
      )),
    };
    const argv = containerArgv(spec, image, env);
    if (c.everStarted) {
      c.restartCount++;
      c.lastState = c.state;
    }
    c.image = spec.image!;
    c.generation++;
    const gen = c.generation;
    const child = launch(this.launchSpec(spec, image, env, argv), this.logFile(c.name));
    c.child = child;
    c.pid = child.pid;
    c.everStarted = true;
    c.ready = false;
    c.started = !spec.startupProbe;
    c.killReason = undefined;
    const startedAt = now();
    c.state = { kind: 'running', startedAt };
    c.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.onExit(c, gen, code, signal);
        resolve();
      });
      child.on('error', (err) => {
        this.log.warn({ err: err.message, container: c.name }, 'container failed to start');
        this.onExit(c, gen, 128, null);
        resolve();
      });
    });
    this.persist();
    this.log.info({ container: c.name, pid: child.pid, image: spec.image, argv }, 'container started');
    this.ctx.event(this.pod, 'Normal', 'Started', `Started container ${c.name} (${spec.image})`);
    this.startProbes(c, spec);
  }

  private onExit(c: Container, gen: number, code: number | null, signal: NodeJS.Signals | null): void {
    if (c.generation !== gen || c.state.kind !== 'running') return;
    const exitCode = code ?? (signal === 'SIGKILL' ? 137 : signal === 'SIGTERM' ? 143 : 128);
    const startedAt = c.state.startedAt;
    const ranMs = Date.now() - Date.parse(startedAt);
    c.state = {
      kind: 'terminated',
      exitCode,
      reason: c.killReason ?? (exitCode === 0 ? 'Completed' : 'Error'),
      startedAt,
      finishedAt: now(),
    };
    c.ready = false;
    c.pid = undefined;
    c.child = undefined;
    // Exponential back-off for containers that keep dying quickly; a long run resets it.
    c.backoffSec =
      ranMs > 30000 || (c.init && exitCode === 0)
        ? 0
        : Math.min(backoffMax, c.backoffSec ? c.backoffSec * 2 : backoffBase);
    c.backoffUntil = Date.now() + c.backoffSec * 1000;
    this.persist();
    this.log.info({ container: c.name, exitCode, signal }, 'container exited');
    if (exitCode !== 0 && !c.killReason)
      this.ctx.event(this.pod, 'Warning', 'BackOff', `Container ${c.name} exited with code ${exitCode}`);
    this.sync(this.pod);
  }

  /** SIGTERM, then SIGKILL after the grace period; resolves when the process is gone. */
  private async kill(c: Container, reason: string, graceSec?: number): Promise<void> {
    if (!c.running || !c.pid) return;
    c.killReason ??= reason === 'image changed' ? undefined : reason;
    const grace = (graceSec ?? this.pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000;
    signalGroup(c.pid, 'SIGTERM');
    const exited = c.exited ?? Promise.resolve();
    const timedOut = await Promise.race([exited.then(() => false), sleep(grace).then(() => true)]);
    if (timedOut && c.pid) {
      signalGroup(c.pid, 'SIGKILL');
    }
    await Promise.race([exited, sleep(5000)]);
  }

  /** Fault helper: the container's process dies as in a crash. */
  crash(name?: string): boolean {
    const c = name ? this.containers.get(name) : [...this.containers.values()].find((x) => !x.init && x.running);
    if (!c?.running || !c.pid) return false;
    signalGroup(c.pid, 'SIGKILL');
    return true;
  }

  /** Fault helper: the pod's sandbox is recreated (a node reboot, a container runtime restart): every
   *  container is killed and, as the kubelet does, the init containers run again before the others. */
  async restartSandbox(): Promise<void> {
    this.holding = true;
    try {
      await this.killAll(0);
      for (const c of [...this.containers.values()]) if (c.init) this.containers.delete(c.name);
      this.persist();
    } finally {
      this.holding = false;
    }
    this.sync(this.pod);
  }

  /** Stops every process at once (node stop, agent shutdown); the pod object is left alone. */
  async killAll(graceSec: number): Promise<void> {
    await Promise.all([...this.containers.values()].map((c) => this.kill(c, 'Killed', graceSec)));
  }

  private async finishDeletion(): Promise<void> {
    const grace = this.pod.metadata?.deletionGracePeriodSeconds ?? this.pod.spec?.terminationGracePeriodSeconds ?? 30;
    for (const c of this.containers.values())
      if (c.running) this.ctx.event(this.pod, 'Normal', 'Killing', `Stopping container ${c.name}`);
    await Promise.all([...this.containers.values()].map((c) => this.kill(c, 'Killed', grace)));
    await this.cleanup();
    try {
      await this.ctx.core.deleteNamespacedPod({
        name: this.pod.metadata!.name!,
        namespace: this.pod.metadata!.namespace!,
        body: { gracePeriodSeconds: 0, preconditions: { uid: this.key } },
      });
    } catch (e) {
      if ((e as { code?: number }).code !== 404 && (e as { code?: number }).code !== 409) throw e;
    }
    this.log.info('pod deleted');
  }

  /** Removes the sandbox and the pod's volumes (PVC data lives elsewhere and stays). */
  async cleanup(): Promise<void> {
    this.deleted = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.secretTimer);
    for (const c of this.containers.values()) {
      c.generation++;
      if (c.running && c.pid) signalGroup(c.pid, 'SIGKILL');
    }
    await this.ctx.network.removeSandbox(this.key);
    rmSync(this.dir, { recursive: true, force: true });
  }

  // --- probes ---
  private startProbes(c: Container, spec: V1Container): void {
    const gen = c.generation;
    if (spec.startupProbe) void this.probeLoop(c, gen, spec, 'startup', spec.startupProbe);
    if (spec.readinessProbe) void this.probeLoop(c, gen, spec, 'readiness', spec.readinessProbe);
    else c.ready = true;
    if (spec.livenessProbe) void this.probeLoop(c, gen, spec, 'liveness', spec.livenessProbe);
  }

  private async probeLoop(
    c: Container,
    gen: number,
    spec: V1Container,
    kind: 'startup' | 'readiness' | 'liveness',
    probe: V1Probe,
  ): Promise<void> {
    const period = (probe.periodSeconds ?? 10) * 1000;
    const failureThreshold = probe.failureThreshold ?? 3;
    const successThreshold = probe.successThreshold ?? 1;
    await sleep((probe.initialDelaySeconds ?? 0) * 1000);
    let ok = 0;
    let bad = 0;
    while (c.generation === gen && c.running && !this.deleted) {
      if (kind !== 'startup' && !c.started) {
        await sleep(200);
        continue;
      }
      if (!this.ctx.nodeRunning(this.node)) {
        await sleep(period);
        continue;
      }
      const result = await this.runProbe(spec, probe).catch(() => false);
      if (c.generation !== gen) return;
      if (result) {
        ok++;
        bad = 0;
      } else {
        bad++;
        ok = 0;
      }
      if (kind === 'startup') {
        if (ok >= 1) {
          c.started = true;
          this.sync(this.pod);
          return;
        }
        if (bad >= failureThreshold) {
          this.ctx.event(this.pod, 'Warning', 'Unhealthy', `Startup probe failed for ${c.name}`);
          await this.kill(c, 'StartupProbeFailed');
          return;
        }
      } else if (kind === 'readiness') {
        const was = c.ready;
        if (ok >= successThreshold) c.ready = true;
        if (bad >= failureThreshold) c.ready = false;
        if (was !== c.ready) {
          if (!c.ready) this.ctx.event(this.pod, 'Warning', 'Unhealthy', `Readiness probe failed for ${c.name}`);
          this.sync(this.pod);
        }
      } else if (bad >= failureThreshold) {
        this.ctx.event(
          this.pod,
          'Warning',
          'Unhealthy',
          `Liveness probe failed for ${c.name}; container will be restarted`,
        );
        await this.kill(c, 'LivenessProbeFailed');
        return;
      }
      await sleep(period);
    }
  }

  private async runProbe(spec: V1Container, probe: V1Probe): Promise<boolean> {
    const timeout = (probe.timeoutSeconds ?? 1) * 1000;
    const port = (p: number | string | undefined) =>
      typeof p === 'number' ? p : Number(spec.ports?.find((x) => x.name === p)?.containerPort ?? p);
    if (probe.httpGet) {
      const g = probe.httpGet;
      return new Promise((resolve) => {
        const req = request(
          {
            host: g.host ?? this.sandbox!.ip,
            port: port(g.port),
            path: g.path ?? '/',
            timeout,
            headers: Object.fromEntries((g.httpHeaders ?? []).map((h) => [h.name, h.value])),
          },
          (res) => {
            res.resume();
            resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 400);
          },
        );
        req.on('error', () => resolve(false));
        req.on('timeout', () => {
          req.destroy();
          resolve(false);
        });
        req.end();
      });
    }
    if (probe.tcpSocket) {
      const t = probe.tcpSocket;
      return new Promise((resolve) => {
        const s = connect({ host: t.host ?? this.sandbox!.ip, port: port(t.port), timeout });
        s.on('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
        s.on('timeout', () => {
          s.destroy();
          resolve(false);
        });
      });
    }
    if (probe.exec?.command?.length) {
      const image = resolveImage(spec.image!)!;
      const env = await containerEnv(this.ctx.core, this.pod, spec);
      const child = launch(this.launchSpec(spec, image, env, probe.exec.command));
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          if (child.pid) signalGroup(child.pid, 'SIGKILL');
          resolve(false);
        }, timeout);
        child.on('exit', (code) => {
          clearTimeout(timer);
          resolve(code === 0);
        });
        child.on('error', () => {
          clearTimeout(timer);
          resolve(false);
        });
      });
    }
    return true;
  }

  // --- status ---
  private statusOf(spec: V1Container, c: Container | undefined): V1ContainerStatus {
    const st = (s: State | undefined) =>
      !s
        ? undefined
        : s.kind === 'waiting'
          ? { waiting: { reason: s.reason, message: s.message } }
          : s.kind === 'running'
            ? { running: { startedAt: s.startedAt as unknown as Date } }
            : {
                terminated: {
                  exitCode: s.exitCode,
                  reason: s.reason,
                  startedAt: s.startedAt as unknown as Date,
                  finishedAt: s.finishedAt as unknown as Date,
                },
              };
    const state: State = c
      ? c.state
      : {
          kind: 'waiting' as const,
          reason: this.waitingReason?.reason ?? 'PodInitializing',
          message: this.waitingReason?.message,
        };
    const status = {
      name: spec.name,
      image: c?.image ?? spec.image!,
      imageID: `local://${c?.image ?? spec.image}`,
      containerID: c?.everStarted ? `kec://${this.key}/${spec.name}/${c.restartCount}` : undefined,
      ready: !!c && c.running && c.ready && c.started,
      started: !!c && c.running && c.started,
      restartCount: c?.restartCount ?? 0,
      state: st(state),
      lastState: c?.lastState ? st(c.lastState) : {},
    } as V1ContainerStatus;
    // As the kubelet: a failed container's message is the tail of its log when its policy says so.
    if (
      state.kind === 'terminated' &&
      state.exitCode !== 0 &&
      spec.terminationMessagePolicy === 'FallbackToLogsOnError'
    )
      status.state!.terminated!.message = this.logTail(spec.name);
    return status;
  }

  private phase(): string {
    const pod = this.pod;
    const inits = (pod.spec?.initContainers ?? []).map((s) => this.containers.get(s.name));
    const mains = (pod.spec?.containers ?? []).map((s) => this.containers.get(s.name));
    const policy = pod.spec?.restartPolicy ?? 'Always';
    if (inits.some((c) => c?.state.kind === 'terminated' && c.state.exitCode !== 0) && policy === 'Never')
      return 'Failed';
    if (mains.some((c) => !c || !c.everStarted)) return 'Pending';
    if (mains.some((c) => c!.running)) return 'Running';
    const failed = mains.some((c) => c!.state.kind === 'terminated' && c!.state.exitCode !== 0);
    if (policy === 'Always' || (policy === 'OnFailure' && failed)) return 'Running';
    return failed ? 'Failed' : 'Succeeded';
  }

  private async patchStatus(): Promise<void> {
    const pod = this.pod;
    const mainSpecs = pod.spec?.containers ?? [];
    const initSpecs = pod.spec?.initContainers ?? [];
    const initsDone = initSpecs.every((s) => {
      const c = this.containers.get(s.name);
      return c?.state.kind === 'terminated' && c.state.exitCode === 0;
    });
    const containerStatuses = mainSpecs.map((s) => this.statusOf(s, this.containers.get(s.name)));
    const allReady = containerStatuses.every((s) => s.ready);
    const keep = (pod.status?.conditions ?? []).filter(
      (c) => !['PodReadyToStartContainers', 'Initialized', 'ContainersReady', 'Ready'].includes(c.type),
    );
    const prev = (type: string, status: string) => {
      const old = pod.status?.conditions?.find((c) => c.type === type);
      return old?.status === status && old.lastTransitionTime ? String(old.lastTransitionTime) : now();
    };
    const cond = (type: string, ok: boolean, reason?: string): V1PodCondition =>
      ({
        type,
        status: ok ? 'True' : 'False',
        lastTransitionTime: prev(type, ok ? 'True' : 'False') as unknown as Date,
        ...(ok || !reason ? {} : { reason }),
      }) as V1PodCondition;
    const status = {
      phase: this.phase(),
      hostIP: this.ctx.hostIP,
      hostIPs: [{ ip: this.ctx.hostIP }],
      ...(this.sandbox ? { podIP: this.sandbox.ip, podIPs: [{ ip: this.sandbox.ip }] } : {}),
      startTime: this.startTime,
      conditions: [
        cond('PodReadyToStartContainers', !!this.sandbox),
        cond('Initialized', initsDone, 'ContainersNotInitialized'),
        cond('ContainersReady', allReady, 'ContainersNotReady'),
        cond('Ready', allReady, 'ContainersNotReady'),
        ...keep,
      ],
      containerStatuses,
      ...(initSpecs.length
        ? { initContainerStatuses: initSpecs.map((s) => this.statusOf(s, this.containers.get(s.name))) }
        : {}),
      ...(pod.spec?.ephemeralContainers?.length
        ? {
            ephemeralContainerStatuses: pod.spec.ephemeralContainers.map((s) =>
              this.statusOf(s as V1Container, this.containers.get(s.name)),
            ),
          }
        : {}),
    };
    const json = JSON.stringify(status);
    if (json === this.lastStatus) return;
    await this.ctx.core.patchNamespacedPodStatus(
      { name: pod.metadata!.name!, namespace: pod.metadata!.namespace!, body: { status } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    this.lastStatus = json;
  }

  /** The kubelet's FallbackToLogsOnError: the last 2048 bytes (at most 80 lines) of the container's log. */
  private logTail(container: string): string {
    try {
      const text = readFileSync(this.logFile(container), 'utf8').slice(-2048);
      return text.split('\n').slice(-80).join('\n');
    } catch {
      return '';
    }
  }

  /** Forget the last status sent, so the next sync writes it again (after the node comes back). */
  resetStatus(): void {
    this.lastStatus = '';
  }
}
