// The etcd layer of the activities: clients, one member's Status, the health rule. No client-side retries: a retried MemberAdd that was already applied
// would add a second member (sdk-pitfalls §3.3). Temporal retries the whole, idempotent activity.
//
// TLS (issue 18): a TLS member pod is known by its annotation. Wherever member pods are read (notePods), the
// controller's client certificate of that cluster is loaded (Secret <cluster>-controller-tls, cached) and tied to
// the pod's IP; clientURLOf(ip) then says https and withEtcd dials with that certificate. The one place that
// decides how the controller talks to a member.
//
// Auth (issue 18): when a cluster's root credentials Secret says it is in use (annotation), notePods ties the pod's IP
// to it and withEtcd sends a root token with every call. The token is asked of any member of the cluster that answers
// (a learner refuses Authenticate; tokens are replicated, so it accepts one made by a voter) and kept a minute; etcd
// answering that auth is not enabled yet means no token. Passwords never reach a log line or an error message.
import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';
import { Etcd3, GRPCDeadlineExceededError, type IOptions } from 'etcd3';
import { createHash } from 'node:crypto';
import { noop } from 'cockatiel';
import {
  clientURLOf as urlOf,
  controllerTlsSecretName,
  rootCredentialsSecretName,
  tlsServerName,
} from '../api/names.js';
import { authInUseAnnotation, clusterOf, tlsAnnotation } from '../api/etcdcluster.js';

export interface TlsCredentials {
  ca: string;
  cert: string;
  key: string;
  /** The name every member certificate holds; pod IPs are not in certificates. */
  serverName: string;
}

const byIP = new Map<string, TlsCredentials>();
const secrets = new Map<string, { at: number; creds: Promise<TlsCredentials> }>();

export interface Credentials {
  username: string;
  password: string;
}
/** Pod IP → its cluster (`<ns>/<name>`), for every member pod seen; the cluster's root credentials while in use. */
const clusterByIP = new Map<string, string>();
const rootCreds = new Map<string, { at: number; creds: Promise<Credentials | undefined> }>();
const tokens = new Map<string, { at: number; token: Promise<string | undefined> }>();

export const isTlsPod = (p: V1Pod) => p.metadata?.annotations?.[tlsAnnotation] === 'true';

/** How a member pod serves (see memberPod): TLS, plain, or the bridge of a switch (plain listeners, certificates mounted). */
export const podTlsOf = (p: V1Pod): 'tls' | 'bridge' | 'plain' =>
  isTlsPod(p) ? 'tls' : p.metadata?.annotations?.[tlsAnnotation] === 'bridge' ? 'bridge' : 'plain';

/** Reads a TLS Secret (ca.crt, tls.crt, tls.key) as credentials for the cluster's members. */
export async function readTlsSecret(
  core: CoreV1Api,
  ref: { namespace: string; name: string },
  secretName: string,
): Promise<TlsCredentials> {
  const s = await core.readNamespacedSecret({ name: secretName, namespace: ref.namespace });
  const get = (k: string) => Buffer.from(s.data?.[k] ?? '', 'base64').toString('utf8');
  return { ca: get('ca.crt'), cert: get('tls.crt'), key: get('tls.key'), serverName: tlsServerName(ref) };
}

/** A username/password Secret (etcd auth); undefined when absent, or when `inUse` and it is not marked in use. */
export async function readCredentials(
  core: CoreV1Api,
  namespace: string,
  secretName: string,
  inUse = false,
): Promise<Credentials | undefined> {
  const s = await core.readNamespacedSecret({ name: secretName, namespace }).catch((e: { code?: number }) => {
    if (e.code === 404) return undefined;
    throw e;
  });
  if (!s || (inUse && s.metadata?.annotations?.[authInUseAnnotation] !== 'true')) return undefined;
  const get = (k: string) => Buffer.from(s.data?.[k] ?? '', 'base64').toString('utf8');
  return { username: get('username'), password: get('password') };
}

/** Forgets what is known of a cluster's auth (the auth step changed it): the next call looks again. */
export function forgetAuth(namespace: string, name: string): void {
  rootCreds.delete(`${namespace}/${name}`);
  tokens.delete(`${namespace}/${name}`);
}

async function noteAuth(core: CoreV1Api, ip: string, namespace: string, cluster: string): Promise<void> {
  const key = `${namespace}/${cluster}`;
  clusterByIP.set(ip, key);
  const hit = rootCreds.get(key);
  if (hit && Date.now() - hit.at < 30_000) return;
  const creds = readCredentials(core, namespace, rootCredentialsSecretName(cluster), true);
  creds.catch(() => rootCreds.delete(key));
  rootCreds.set(key, { at: Date.now(), creds });
}

/** Ties each TLS member pod's IP to its cluster's controller certificate (plain pods untie theirs), and every member
 *  pod's IP to its cluster's root credentials when auth is in use. */
export async function notePods(core: CoreV1Api, pods: V1Pod[]): Promise<void> {
  for (const p of pods) {
    const ip = p.status?.podIP;
    const cluster = clusterOf(p.metadata?.labels);
    if (!ip) continue;
    if (cluster) await noteAuth(core, ip, p.metadata!.namespace!, cluster);
    if (!isTlsPod(p) || !cluster) {
      byIP.delete(ip);
      continue;
    }
    const ref = { namespace: p.metadata!.namespace!, name: cluster };
    const key = `${ref.namespace}/${cluster}`;
    let hit = secrets.get(key);
    if (!hit || Date.now() - hit.at > 60_000) {
      hit = { at: Date.now(), creds: readTlsSecret(core, ref, controllerTlsSecretName(cluster)) };
      hit.creds.catch(() => secrets.delete(key));
      secrets.set(key, hit);
    }
    // Without its certificate (Secret gone) the member is dialled plain and reads as not answering.
    const creds = await hit.creds.catch(() => undefined);
    if (creds) byIP.set(ip, creds);
    else byIP.delete(ip);
  }
}

/** A member's client URL by pod IP: https when its pod serves TLS (see notePods). */
export const clientURLOf = (ip: string) => urlOf(ip, byIP.has(ip));

/** Client options for endpoints: TLS credentials when they are https (from notePods, or given). */
export function clientOptions(
  endpoints: string[],
  given?: TlsCredentials,
): Pick<IOptions, 'credentials' | 'grpcOptions'> {
  const tls = endpoints.some((u) => u.startsWith('https://'));
  if (!tls) return {};
  const creds = given ?? endpoints.map((u) => byIP.get(new URL(u).hostname)).find(Boolean);
  if (!creds) throw new Error(`no client certificate known for ${endpoints.join(', ')}`);
  return {
    credentials: {
      rootCertificate: Buffer.from(creds.ca),
      certChain: Buffer.from(creds.cert),
      privateKey: Buffer.from(creds.key),
    },
    grpcOptions: { 'grpc.ssl_target_name_override': creds.serverName, 'grpc.default_authority': creds.serverName },
  };
}

/** A client of these endpoints: TLS and the cluster's root token as notePods found them. The caller closes it. */
async function dial(endpoints: string[], timeoutMs: number, tls?: TlsCredentials, token?: string): Promise<Etcd3> {
  if (!endpoints.length) throw new Error('no etcd endpoint to talk to');
  const cluster = clusterOfEndpoints(endpoints);
  token ??= cluster ? await rootToken(cluster, timeoutMs) : undefined;
  const client = new Etcd3({
    hosts: endpoints,
    dialTimeout: timeoutMs,
    faultHandling: { global: noop, host: () => noop },
    ...clientOptions(endpoints, tls),
  });
  if (token) withToken(client, token);
  return client;
}

const clusterOfEndpoints = (endpoints: string[]) =>
  endpoints.map((u) => clusterByIP.get(new URL(u).hostname)).find(Boolean);

/** A token etcd no longer takes (expired, auth turned off or on): asked for again next time. Says whether it was one. */
function forgetRefusedToken(endpoints: string[], e: unknown): boolean {
  const cluster = clusterOfEndpoints(endpoints);
  if (!cluster || !/auth|token|user name is empty|permission denied/i.test(String(e))) return false;
  tokens.delete(cluster);
  return true;
}

export async function withEtcd<T>(
  endpoints: string[],
  fn: (c: Etcd3) => Promise<T>,
  timeoutMs = 3000,
  tls?: TlsCredentials,
): Promise<T> {
  const client = await dial(endpoints, timeoutMs, tls);
  try {
    return await fn(client);
  } catch (e) {
    forgetRefusedToken(endpoints, e);
    throw e;
  } finally {
    client.close();
  }
}

/** What a client of one endpoint is dialled with: the certificate tied to its IP and the cluster's root token. A
 *  client is only reused for the same endpoint, certificate and token (a rotated one gets a client of its own). */
async function identityOf(url: string, timeoutMs: number): Promise<{ key: string; token?: string }> {
  const cluster = clusterOfEndpoints([url]);
  const token = cluster ? await rootToken(cluster, timeoutMs) : undefined;
  const creds = url.startsWith('https://') ? byIP.get(new URL(url).hostname) : undefined;
  const tls = creds ? certificateId(creds) : 'plain';
  const auth = token ? createHash('sha256').update(token).digest('hex').slice(0, 16) : 'none';
  return { key: `${url} ${tls} ${auth}`, token };
}

/** A certificate's short digest, once per credentials object (notePods replaces them at most once a minute). */
const certificateIds = new WeakMap<TlsCredentials, string>();
function certificateId(creds: TlsCredentials): string {
  let id = certificateIds.get(creds);
  if (!id)
    certificateIds.set(
      creds,
      (id = createHash('sha256').update(creds.ca).update(creds.cert).digest('hex').slice(0, 16)),
    );
  return id;
}

/** One client per member endpoint, reused across calls instead of one TLS dial per call (issue 17: 50 clusters' looks
 *  dialled ~450 connections a round, and under load the dials missed their deadlines, reading as quorum lost).
 *  - Any failed call drops its client: the next call dials afresh, as a one-off client would.
 *  - A read on a reused client that fails other than by its deadline may have met a stale connection (the member
 *    restarted): it runs once more on a fresh client. A silent member still costs one deadline, not two.
 *  - With `idleMs`, a client unused that long (its pod gone) is closed. close() closes all. */
export class EtcdClients {
  private readonly open = new Map<string, { client: Promise<Etcd3>; usedAt: number }>();
  private sweeper?: NodeJS.Timeout;

  constructor(private readonly idleMs?: number) {}

  /** Runs fn on the endpoint's client. Never asked twice: a change etcd applied whose answer was lost must not be
   *  sent again (Temporal retries the whole activity, which looks first). */
  async on<T>(url: string, fn: (c: Etcd3) => Promise<T>, timeoutMs = 3000): Promise<T> {
    const { key, token } = await identityOf(url, timeoutMs);
    return this.call(key, url, token, fn, timeoutMs);
  }

  /** A read (fn changes nothing) on the endpoint's client: asked once more on a fresh client when a reused one fails
   *  other than by its deadline (a stale connection to a member that restarted). */
  async read<T>(url: string, fn: (c: Etcd3) => Promise<T>, timeoutMs = 3000): Promise<T> {
    const { key, token } = await identityOf(url, timeoutMs);
    const reused = this.open.has(key);
    try {
      return await this.call(key, url, token, fn, timeoutMs);
    } catch (e) {
      if (!reused || e instanceof GRPCDeadlineExceededError) throw e;
      return this.call(key, url, token, fn, timeoutMs);
    }
  }

  close(): void {
    for (const key of [...this.open.keys()]) this.drop(key);
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  private async call<T>(
    key: string,
    url: string,
    token: string | undefined,
    fn: (c: Etcd3) => Promise<T>,
    timeoutMs: number,
  ): Promise<T> {
    let entry = this.open.get(key);
    if (!entry) {
      entry = { client: dial([url], timeoutMs, undefined, token), usedAt: Date.now() };
      this.open.set(key, entry);
      this.sweepIdle();
    }
    entry.usedAt = Date.now();
    const mine = entry;
    try {
      return await fn(await mine.client);
    } catch (e) {
      forgetRefusedToken([url], e);
      if (this.open.get(key) === mine) this.drop(key);
      throw e;
    }
  }

  private drop(key: string): void {
    const entry = this.open.get(key);
    this.open.delete(key);
    entry?.client.then(
      (c) => c.close(),
      () => undefined,
    );
  }

  private sweepIdle(): void {
    if (!this.idleMs || this.sweeper) return;
    const idleMs = this.idleMs;
    this.sweeper = setInterval(() => {
      for (const [key, e] of this.open) if (Date.now() - e.usedAt > idleMs) this.drop(key);
      if (!this.open.size) this.close();
    }, idleMs / 2);
    this.sweeper.unref();
  }
}

/** The clients every look and wait uses (member list, each member's Status), kept across activities; closed a minute
 *  after their last use. */
export const keptClients = new EtcdClients(60_000);

/** Sends `token` with every call of this client (etcd3's own auth option would authenticate on the member dialled,
 *  which a learner refuses). */
function withToken(client: Etcd3, token: string): void {
  type Meta = { set(k: string, v: string): void };
  const auth = (client as unknown as { pool: { authenticator: { getMetadata: () => Promise<Meta> } } }).pool
    .authenticator;
  const plain = auth.getMetadata.bind(auth); // without the auth option: a new, empty Metadata each call
  auth.getMetadata = async () => {
    const meta = await plain();
    meta.set('token', token);
    return meta;
  };
}

/** A client as an etcd user. etcd3's own auth option asks each host for a token without the TLS server name override
 *  (pod IPs are not in member certificates), so the token is asked by a second client of the same options. */
export function etcdAs(options: IOptions, creds: Credentials): Etcd3 {
  const client = new Etcd3(options);
  type Meta = { set(k: string, v: string): void };
  const auth = (
    client as unknown as {
      pool: { authenticator: { getMetadata: () => Promise<Meta>; invalidateMetadata: () => void } };
    }
  ).pool.authenticator;
  const plain = auth.getMetadata.bind(auth);
  let token: Promise<string> | undefined;
  auth.invalidateMetadata = () => (token = undefined);
  auth.getMetadata = async () => {
    token ??= (async () => {
      const asker = new Etcd3(options);
      try {
        return (await asker.auth.authenticate({ name: creds.username, password: creds.password })).token;
      } finally {
        asker.close();
      }
    })();
    token.catch(() => (token = undefined));
    const meta = await plain();
    meta.set('token', await token);
    return meta;
  };
  return client;
}

/** The cluster's root token (cached a minute), or undefined when auth is not in use or not enabled in etcd yet. */
function rootToken(cluster: string, timeoutMs: number): Promise<string | undefined> {
  const hit = tokens.get(cluster);
  if (hit && Date.now() - hit.at < 60_000) return hit.token;
  const token = (async () => {
    const creds = await rootCreds.get(cluster)?.creds.catch(() => undefined);
    if (!creds) return undefined;
    const ips = [...clusterByIP].filter(([, c]) => c === cluster).map(([ip]) => ip);
    let last: unknown = new Error(`no member of ${cluster} to authenticate with`);
    for (const ip of ips) {
      const url = clientURLOf(ip);
      const c = new Etcd3({
        hosts: [url],
        dialTimeout: timeoutMs,
        faultHandling: { global: noop, host: () => noop },
        ...clientOptions([url]),
      });
      try {
        return (await c.auth.authenticate({ name: creds.username, password: creds.password }, deadline(timeoutMs)))
          .token;
      } catch (e) {
        if (/authentication is not enabled/.test(String(e))) return undefined;
        // Never the password: etcd's message names neither it nor the token.
        last = e;
      } finally {
        c.close();
      }
    }
    throw last;
  })();
  token.catch(() => tokens.delete(cluster));
  tokens.set(cluster, { at: Date.now(), token });
  return token;
}

export const deadline = (ms: number) => ({ deadline: new Date(Date.now() + ms) });

export type EtcdStatus = Awaited<ReturnType<Etcd3['maintenance']['status']>>;

/** One member's Status, asked on its own endpoint (never through another member, which would answer for itself). */
export const memberStatus = (url: string, timeoutMs = 2000): Promise<EtcdStatus> =>
  keptClients.read(url, (c) => statusOn(c, timeoutMs), timeoutMs);

/** The Status of the member a single-endpoint client talks to. */
export const statusOn = (c: Etcd3, timeoutMs = 2000): Promise<EtcdStatus> => c.maintenance.status(deadline(timeoutMs));

/** The health rule, its one home: a member that answers its own Status and knows a leader serves (reads at
 *  least). Alarms are reported apart and never make it unhealthy: NOSPACE is cluster-wide and would read as
 *  quorum loss. Other errors are reported, not judged. */
export function healthOf(s: EtcdStatus): {
  healthy: boolean;
  leaderKnown: boolean;
  isLeader: boolean;
  alarms: { memberId: string; alarm: string }[];
  error?: string;
} {
  const leaderKnown = s.leader !== '0';
  const { alarms, other } = statusProblems(s.errors);
  return {
    healthy: leaderKnown,
    leaderKnown,
    isLeader: leaderKnown && s.leader === s.header.member_id,
    alarms,
    error: !leaderKnown ? 'no leader' : other.join('; ') || undefined,
  };
}

/** What a Status response's `errors` holds: every active alarm of the cluster (e.g. "memberID:42 alarm:NOSPACE",
 *  the same list on every member) and, on 3.6, "no leader". Alarms are not ill health: a member with one still serves. */
export function statusProblems(errors: string[] | undefined): {
  alarms: { memberId: string; alarm: string }[];
  other: string[];
} {
  const alarms: { memberId: string; alarm: string }[] = [];
  const other: string[] = [];
  for (const e of errors ?? []) {
    const m = /memberID:\s*(\d+)\s+alarm:\s*(\w+)/.exec(e);
    if (m) alarms.push({ memberId: m[1], alarm: m[2] });
    else other.push(e);
  }
  return { alarms, other };
}

/** Asks again after a failure: `attempt(i)` for i = 0, 1, … up to `tries` times while `again(error)` holds, with
 *  `pause(error)` between; then the last error. For what is worth a second ask: a member slow to answer on a loaded node,
 *  or etcd's reconfiguration rule refusing a change for a few seconds. */
export async function retry<T>(
  attempt: (i: number) => Promise<T>,
  opts: { tries: number; again?: (e: unknown) => boolean; pause?: (e: unknown) => Promise<void> },
): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await attempt(i);
    } catch (e) {
      if (i + 1 >= opts.tries || (opts.again && !opts.again(e))) throw e;
      await opts.pause?.(e);
    }
  }
}
