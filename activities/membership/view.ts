// The cluster as etcd sees it, for the membership steps: each member's client URL, the linearizable member list,
// one member by peer URL, a call through the first member that answers. Built on the etcd layer (etcd-client.ts).
import type { V1Pod } from '@kubernetes/client-node';
import type { Etcd3, IMember } from 'etcd3';
import { Context } from '@temporalio/activity';
import { memberNameOf, peerURL } from '../../api/names.js';
import { legacyEndpointsAnnotation, type ClusterRef } from '../../api/etcdcluster.js';
import {
  clientURLOf,
  deadline,
  keptClients,
  memberStatus,
  type EtcdClients,
  retry,
  statusOn,
  withEtcd,
  type EtcdStatus,
} from '../etcd-client.js';
import { firstLine, runningMemberPods, runsWithAddress, sleep, type Kube } from '../kube.js';
import { readCluster } from '../cluster/read.js';

/** Client URLs by member name: the cluster's running member pods, plus a legacy cluster's members while it is adopted. */
export async function clientURLs(kube: Kube, ref: ClusterRef, exclude: string[] = []): Promise<Record<string, string>> {
  const out: Record<string, string> = Object.fromEntries(
    (await runningMemberPods(kube.core, ref)).map((p) => [p.metadata!.name!, clientURLOf(p.status!.podIP!)]),
  );
  for (const url of await legacyURLs(kube, ref)) {
    const name = await legacyMemberName(url).catch(() => undefined); // no longer answers (removed): skipped
    if (name && !out[name]) out[name] = url;
  }
  for (const name of exclude) delete out[name];
  return out;
}

/** The client URLs a legacy cluster being adopted was given by (annotation on the EtcdCluster). */
async function legacyURLs(kube: Kube, ref: ClusterRef): Promise<string[]> {
  const obj = await readCluster(kube, ref);
  return (obj?.metadata.annotations?.[legacyEndpointsAnnotation] ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
}

/** The name of the legacy member answering on this URL, as etcd knows it. */
const legacyMemberName = (url: string) =>
  withEtcd(
    [url],
    async (c) => {
      const s = await c.maintenance.status(deadline(2000));
      const list = await c.cluster.memberList({}, deadline(2000));
      const me = list.members.find((m) => m.ID === s.header.member_id);
      return me ? memberNameOf(me) : undefined;
    },
    2000,
  );

/** One look at the cluster for a run of membership calls (issue 17): the client URLs read once (member pods, a legacy
 *  cluster's endpoints), on the clients kept per member endpoint (keptClients). The member list and each Status are
 *  still asked of etcd at every call: only Kubernetes reads and connections are shared. */
export class ClusterView {
  private constructor(
    readonly ref: ClusterRef,
    /** Client URL by member name. */
    readonly urls: Record<string, string>,
    private readonly clients: EtcdClients = keptClients,
  ) {}

  static async open(kube: Kube, ref: ClusterRef, exclude: string[] = []): Promise<ClusterView> {
    return new ClusterView(ref, await clientURLs(kube, ref, exclude));
  }

  /** A view of member pods just read (memberPods: their certificates noted), for a cluster with no legacy endpoints. */
  static ofPods(ref: ClusterRef, pods: V1Pod[]): ClusterView {
    return new ClusterView(
      ref,
      Object.fromEntries(pods.filter(runsWithAddress).map((p) => [p.metadata!.name!, clientURLOf(p.status!.podIP!)])),
    );
  }

  /** Runs fn against the first member that answers (`exclude`d ones not asked); `read`: fn changes nothing
   *  (EtcdClients.read). */
  async onCluster<T>(fn: (c: Etcd3) => Promise<T>, exclude: string[] = [], read = false): Promise<T> {
    let last: unknown;
    for (const [name, url] of Object.entries(this.urls)) {
      if (exclude.includes(name)) continue;
      try {
        return await (read ? this.clients.read(url, fn) : this.clients.on(url, fn));
      } catch (e) {
        last = e;
      }
    }
    throw new Error(
      `no member of ${this.ref.namespace}/${this.ref.name} answered: ${(last as Error | undefined)?.message ?? 'no running member pods'}`,
    );
  }

  /** etcd's member list, linearizable: a follower's own view may miss a change just made (3.4 ignores the flag). */
  listMembers(exclude: string[] = []): Promise<IMember[]> {
    return this.onCluster(
      (c) => c.cluster.memberList({ linearizable: true }, deadline(3000)).then((r) => r.members),
      exclude,
      true,
    );
  }

  /** The member's own client URL; its pod must be running. */
  urlOf(member: string): string {
    return runningURL(this.urls, member);
  }

  /** The member's Status, asked on its own endpoint. */
  async statusOf(member: string): Promise<EtcdStatus> {
    return this.clients.read(this.urlOf(member), (c) => statusOn(c), 2000);
  }

  /** Runs fn against this member alone (its pod must be running). */
  async on<T>(member: string, fn: (c: Etcd3) => Promise<T>, timeoutMs = 3000): Promise<T> {
    return this.clients.on(this.urlOf(member), fn, timeoutMs);
  }
}

/** Runs fn with one view of the cluster (`exclude`d members' pods left out). */
export const withView = async <T>(
  kube: Kube,
  ref: ClusterRef,
  fn: (v: ClusterView) => Promise<T>,
  exclude: string[] = [],
): Promise<T> => fn(await ClusterView.open(kube, ref, exclude));

/** Runs fn against the first member that answers. */
export const onCluster = <T>(kube: Kube, ref: ClusterRef, fn: (c: Etcd3) => Promise<T>, exclude: string[] = []) =>
  withView(kube, ref, (v) => v.onCluster(fn, exclude));

/** etcd's member list, linearizable (ClusterView.listMembers). */
export const listMembers = (kube: Kube, ref: ClusterRef, exclude: string[] = []) =>
  withView(kube, ref, (v) => v.listMembers(exclude));

/** The member by our peer URL, or by etcd's name for members we did not create (adopted clusters). */
export const findMember = (members: IMember[], ref: ClusterRef, member: string) =>
  members.find((m) => m.peerURLs.includes(peerURL(ref, member)) || memberNameOf(m) === member);

/** The member's own client URL; its pod must be running. */
export const memberClientURL = async (kube: Kube, ref: ClusterRef, member: string): Promise<string> =>
  runningURL(await clientURLs(kube, ref), member);

function runningURL(urls: Record<string, string>, member: string): string {
  const url = urls[member];
  if (!url) throw new Error(`pod ${member} is not running`);
  return url;
}

/** The member's Status, asked on its own endpoint. */
export const statusOf = async (kube: Kube, ref: ClusterRef, member: string) =>
  memberStatus(await memberClientURL(kube, ref, member));

/** etcd's strict reconfiguration check refusing a membership change for a few seconds after a member (re)connects. */
export const isRefusal = (e: unknown) =>
  /unhealthy cluster|not enough started members/i.test(e instanceof Error ? e.message : String(e));

/** A membership change etcd refuses (isRefusal) is tried again every 250 ms, heartbeating, for at most 30 s, instead
 *  of Temporal's 1 s, 2 s, 4 s back-off; any other error (or the 30 s) fails the attempt as usual. */
export async function whileRefused<T>(attempt: () => Promise<T>, refused = { note: '' }): Promise<T> {
  const start = Date.now();
  const until = start + 30_000;
  let why = '';
  const res = await retry(attempt, {
    tries: Infinity,
    again: (e) => isRefusal(e) && Date.now() <= until,
    pause: async (e) => {
      why = firstLine(e);
      Context.current().heartbeat(`refused (${why}): trying again`);
      await sleep(250);
    },
  });
  // Said in the activity's result (the bench's breakdown shows it): this wait is etcd's rule, not ours.
  if (why) refused.note = `etcd refused it for ${((Date.now() - start) / 1000).toFixed(2)} s: ${why}`;
  return res;
}
