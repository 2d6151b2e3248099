// Activities that change or wait on etcd membership. Each looks before it acts (by peer URL), so a
// retry after a crash never adds a second member or removes the wrong one.
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Etcd3, IMember } from 'etcd3';
import type { Logger } from 'pino';
import { memberNameOf, peerURL, quorum } from '../api/names.js';
import { recordEvent } from './cluster.js';
import { clientURLOf, deadline, healthOf, memberStatus as etcdMemberStatus, withEtcd } from './etcd-client.js';
import { Look, done, firstLine, podProblem, pollUntil, runningMemberPods, sleep, type Kube, waiting } from './kube.js';
import { defaultSnapshotCount } from './member-pod.js';
import { tlsActivities } from './tls.js';
import {
  group,
  legacyEndpointsAnnotation,
  memberSelector,
  plural,
  version,
  type ClusterRef,
} from '../api/etcdcluster.js';

const nudgeKey = '__kube-etcd-controller/join-nudge';
const nudgeEveryMs = 1500;
const maxNudges = 400;

export function membershipActivities(kube: Kube, log: Logger) {
  const { core } = kube;

  /** Client URLs by member name: the cluster's running member pods, plus a legacy cluster's members while it is adopted. */
  async function endpoints(ref: ClusterRef, exclude: string[] = []): Promise<Record<string, string>> {
    const out: Record<string, string> = Object.fromEntries(
      (await runningMemberPods(core, ref)).map((p) => [p.metadata!.name!, clientURLOf(p.status!.podIP!)]),
    );
    for (const url of await legacyEndpoints(ref)) {
      try {
        const name = await withEtcd(
          [url],
          async (c) => {
            const s = await c.maintenance.status(deadline(2000));
            const list = await c.cluster.memberList({}, deadline(2000));
            const me = list.members.find((m) => m.ID === s.header.member_id);
            return me ? memberNameOf(me) : undefined;
          },
          2000,
        );
        if (name && !out[name]) out[name] = url;
      } catch {
        /* a legacy member that no longer answers (removed): skip it */
      }
    }
    for (const name of exclude) delete out[name];
    return out;
  }

  async function legacyEndpoints(ref: ClusterRef): Promise<string[]> {
    const obj = (await kube.custom
      .getNamespacedCustomObject({ group, version, plural, namespace: ref.namespace, name: ref.name })
      .catch(() => undefined)) as { metadata?: { annotations?: Record<string, string> } } | undefined;
    return (obj?.metadata?.annotations?.[legacyEndpointsAnnotation] ?? '')
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
  }

  /** Runs fn against the first member that answers. */
  async function onCluster<T>(ref: ClusterRef, fn: (c: Etcd3) => Promise<T>, exclude: string[] = []): Promise<T> {
    const eps = await endpoints(ref, exclude);
    let last: unknown;
    for (const url of Object.values(eps)) {
      try {
        return await withEtcd([url], fn);
      } catch (e) {
        last = e;
      }
    }
    throw new Error(
      `no member of ${ref.namespace}/${ref.name} answered: ${(last as Error | undefined)?.message ?? 'no running member pods'}`,
    );
  }

  // Linearizable: a follower's own view may miss a change just made (3.4 ignores the flag).
  const list = (ref: ClusterRef, exclude: string[] = []) =>
    onCluster(ref, (c) => c.cluster.memberList({ linearizable: true }, deadline(3000)).then((r) => r.members), exclude);
  // By our peer URL, or by etcd's name for members we did not create (adopted clusters).
  const find = (members: IMember[], ref: ClusterRef, member: string) =>
    members.find((m) => m.peerURLs.includes(peerURL(ref, member)) || memberNameOf(m) === member);

  /** Why the member's pod does not run as specified (ErrImagePull: …), if it says. A node may keep the old container
   *  running while the new image fails: then the reason is the pod's last Warning Event. */
  async function podSays(ref: ClusterRef, member: string): Promise<string | undefined> {
    const pod = await core.readNamespacedPod({ name: member, namespace: ref.namespace }).catch(() => undefined);
    const problem = pod && podProblem(pod);
    const want = pod?.spec?.containers[0]?.image;
    // A real kubelet alternates ErrImagePull, ImagePullBackOff and CrashLoopBackOff for an image it cannot pull:
    // a back-off names no image, the pull failure is in the Events.
    const backOff = problem?.startsWith('CrashLoopBackOff');
    if ((problem && !backOff) || !want || (!backOff && want === pod?.status?.containerStatuses?.[0]?.image))
      return problem;
    const events = await core
      .listNamespacedEvent({ namespace: ref.namespace, fieldSelector: `involvedObject.name=${member},type=Warning` })
      .then(
        (l) => l.items,
        () => [],
      );
    const at = (e: (typeof events)[number]) => String(e.lastTimestamp ?? e.eventTime ?? '');
    const sorted = events.sort((a, b) => at(a).localeCompare(at(b)));
    if (backOff) {
      const pull = sorted.filter((e) => e.reason === 'Failed' && e.message?.includes(`"${want}"`)).at(-1);
      return pull ? `${problem}; ${pull.message}` : problem;
    }
    const last = sorted.at(-1);
    return `${want} not started${last ? `: ${last.message}` : ''}`;
  }

  async function memberStatus(ref: ClusterRef, member: string) {
    const url = (await endpoints(ref))[member];
    if (!url) throw new Error(`pod ${member} is not running`);
    return etcdMemberStatus(url);
  }

  /**
   * etcd 3.6 bug: a member that caught up by snapshot refuses its own publish ("too many requests": its
   * applied index stays behind the snapshot's commit index) until one more entry is committed, and serves
   * nothing until then. On an idle cluster that is never. So while a member etcd lists does not answer on its
   * own endpoint, commit one internal key through another member, at most every 1.5 s and 400 times per
   * attempt. Repeated, because a write made before the leader built the snapshot lands inside it.
   */
  function joinNudger(ref: ClusterRef, member: string) {
    let last = 0;
    let writes = 0;
    let inFlight: Promise<void> | undefined;
    let note = '';
    async function write(): Promise<void> {
      try {
        if (!Object.keys(await endpoints(ref, [member])).length) note = 'no other member to write through';
        else if (!find(await list(ref, [member]), ref, member)) note = 'not in the member list yet';
        else {
          await onCluster(ref, (c) => c.put(nudgeKey).value(member).options(deadline(2000)).exec(), [member]);
          note = `in the member list but not serving: nudge write ${++writes}/${maxNudges} (one every ${nudgeEveryMs / 1000} s)`;
        }
      } catch (e) {
        note = `nudge write failed: ${(e as Error).message.split('\n')[0]}`;
      }
    }
    const cleanup = async () => {
      if (writes)
        await onCluster(ref, (c) => c.delete().key(nudgeKey).options(deadline(2000)).exec()).catch(() => undefined);
    };
    return {
      /** Starts a nudge when due, in the background (a cluster still forming, with no leader yet, holds a nudge
       *  for seconds, and the wait must keep looking); says what the wait is waiting for, nudges included. */
      nudge(reason: string): Look<never> {
        if (writes >= maxNudges) return waiting(`${reason}; nudge limit reached (${writes} writes)`);
        const said = waiting(note ? `${reason}; ${note}` : reason);
        if (inFlight || Date.now() - last < nudgeEveryMs) return said;
        last = Date.now();
        inFlight = write().finally(() => {
          inFlight = undefined;
          last = Date.now();
        });
        return said;
      },
      /** Removes the key once the member serves (best effort: the next nudge overwrites it anyway); a nudge
       *  still in flight is not waited for, its key goes once it ends. */
      async done(): Promise<string> {
        if (inFlight) void inFlight.then(cleanup);
        else await cleanup();
        return writes ? ` after ${writes} nudge write(s)` : '';
      },
    };
  }

  /** etcd's strict reconfiguration check refuses a membership change ("unhealthy cluster") for a few seconds
   *  after a member (re)connects: try again every 250 ms, heartbeating, for at most 30 s, instead of
   *  Temporal's 1 s, 2 s, 4 s back-off; any other error (or the 30 s) fails the attempt as usual. */
  async function whileRefused<T>(attempt: () => Promise<T>, refused = { note: '' }): Promise<T> {
    const start = Date.now();
    const until = start + 30_000;
    let why = '';
    for (;;) {
      try {
        const res = await attempt();
        // Said in the activity's result (the bench's breakdown shows it): this wait is etcd's rule, not ours.
        if (why) refused.note = `etcd refused it for ${((Date.now() - start) / 1000).toFixed(2)} s: ${why}`;
        return res;
      } catch (e) {
        const msg = (e as Error).message;
        if (!/unhealthy cluster|not enough started members/i.test(msg) || Date.now() > until) throw e;
        why = msg.split('\n')[0];
        Context.current().heartbeat(`refused (${msg.split('\n')[0]}): trying again`);
        await sleep(250);
      }
    }
  }

  /**
   * MemberAdd through a member that satisfies etcd's strict reconfiguration rule (connected to enough
   * voters for 5 s; the leader first, it holds the oldest connections); refused everywhere: tried again.
   */
  async function addThroughReadyMember(ref: ClusterRef, url: string, seen?: { note: string }) {
    return whileRefused(async () => {
      const eps = await endpoints(ref);
      const leaderFirst = await Promise.any(
        Object.values(eps).map((u) =>
          etcdMemberStatus(u, 1000).then((s) => (healthOf(s).isLeader ? u : Promise.reject(new Error('follower')))),
        ),
      ).catch(() => undefined);
      const order = [...new Set([...(leaderFirst ? [leaderFirst] : []), ...Object.values(eps)])];
      let last: Error | undefined;
      let refused: Error | undefined;
      for (const u of order) {
        try {
          return await withEtcd([u], (c) => c.cluster.memberAdd({ peerURLs: [url], isLearner: true }, deadline(5000)));
        } catch (e) {
          last = e as Error;
        }
        if (/unhealthy cluster|not enough started members/i.test(last.message)) refused = last;
      }
      throw refused ?? last ?? new Error(`no running member of ${ref.namespace}/${ref.name} to add through`);
    }, seen);
  }

  return {
    /**
     * Health gate before any membership change: every voter answers and knows the leader. With the
     * change's effect on the voter count (heal any minority), unhealthy voters are tolerated while the
     * healthy ones still make a quorum after it: 5 members with 2 dead heal one at a time.
     */
    async checkClusterHealthy(ref: ClusterRef, ignore: string[] = [], votersDelta?: -1 | 0 | 1): Promise<string> {
      const members = await list(ref);
      const voters = members.filter((m) => !m.isLearner);
      const eps = await endpoints(ref);
      const problems: string[] = [];
      let healthy = 0;
      for (const m of voters) {
        const name = memberNameOf(m);
        if (ignore.includes(name)) continue;
        const url = eps[name];
        try {
          if (!url) throw new Error('pod not running');
          const h = healthOf(await etcdMemberStatus(url));
          if (!h.healthy) throw new Error(h.error);
          healthy++;
        } catch (e) {
          problems.push(`${name}: ${(e as Error).message.split('\n')[0]}`);
        }
      }
      const after = quorum(voters.length + (votersDelta ?? 0));
      if (problems.length && (votersDelta === undefined || healthy < after)) {
        throw new Error(
          `cluster not healthy, refusing to change membership: ${problems.join('; ')}${votersDelta === undefined ? '' : ` (${healthy} healthy, ${after} needed after the change)`}`,
        );
      }
      if (healthy < quorum(voters.length)) throw new Error(`only ${healthy} of ${voters.length} voters healthy`);
      const learners = members.filter((m) => m.isLearner).map((m) => memberNameOf(m));
      return `${healthy} healthy voter(s)${learners.length ? `, learner(s) ${learners.join(', ')}` : ''}`;
    },

    /** MemberAddAsLearner, unless the peer URL is already a member. Returns the --initial-cluster for the new pod. */
    async addLearner(
      ref: ClusterRef,
      member: string,
    ): Promise<{ id: string; initialCluster: string; refused?: string }> {
      const url = peerURL(ref, member, (await tlsActivities(core).clusterTlsMode(ref)).enabled);
      let members = await list(ref);
      let me = find(members, ref, member);
      const refused = { note: '' };
      if (!me) {
        const pendingLearner = members.find((m) => m.isLearner);
        if (pendingLearner)
          throw new Error(`learner ${memberNameOf(pendingLearner)} is still pending: one join at a time`);
        const res = await addThroughReadyMember(ref, url, refused);
        members = res.members;
        me = res.member;
        await recordEvent(
          kube,
          ref,
          'Normal',
          'MemberAdded',
          `added ${member} to etcd as a learner (id ${BigInt(me.ID).toString(16)})`,
          log,
        );
      }
      const initialCluster = members
        .map((m) => `${m.ID === me!.ID ? member : memberNameOf(m)}=${m.peerURLs[0]}`)
        .join(',');
      return { id: me.ID, initialCluster, ...(refused.note ? { refused: refused.note } : {}) };
    },

    /** Waits until the learner serves on its own endpoint and has applied (close to) everything the leader has. */
    async waitLearnerCaughtUp(ref: ClusterRef, member: string): Promise<string> {
      const nudger = joinNudger(ref, member);
      return pollUntil(200, async () => {
        const mine = await memberStatus(ref, member).catch((e: Error) => e);
        if (mine instanceof Error) return nudger.nudge(`waiting for learner ${member}: ${firstLine(mine)}`);
        try {
          const members = await list(ref, [member]);
          const leader = members.find((m) => m.ID === mine.leader);
          if (!leader) return waiting(`learner ${member} knows no leader`);
          const ls = await memberStatus(ref, memberNameOf(leader));
          const have = BigInt(mine.raftAppliedIndex || mine.raftIndex);
          const want = BigInt(ls.raftIndex);
          // Same rule as etcd-io's operator: within 10 % of the leader (and the promote call re-checks).
          if (want === 0n || have * 10n >= want * 9n)
            return done(`caught up at raft index ${have} of ${want}${await nudger.done()}`);
          return waiting(`learner ${member} at ${have}/${want}`);
        } catch (e) {
          return waiting(`waiting for learner ${member}: ${firstLine(e)}`);
        }
      });
    },

    /** MemberPromote; already a voter counts as done. etcd refuses until the learner is in sync: retry. */
    async promoteLearner(ref: ClusterRef, member: string): Promise<void> {
      return pollUntil(250, async () => {
        const me = find(await list(ref), ref, member);
        if (!me) throw ApplicationFailure.nonRetryable(`member ${member} is not in the cluster`, 'MemberMissing');
        if (!me.isLearner) return done(undefined);
        try {
          await onCluster(ref, (c) => c.cluster.memberPromote({ ID: me.ID }, deadline(5000)), [member]);
          await recordEvent(kube, ref, 'Normal', 'MemberPromoted', `promoted ${member} to a voting member`, log);
          return done(undefined);
        } catch (e) {
          return waiting(`promotion of ${member} refused: ${firstLine(e)}`);
        }
      });
    },

    /** Waits until the member serves on its own endpoint as a started voter that knows the leader (alarms do not matter). */
    async waitMemberHealthy(ref: ClusterRef, member: string): Promise<string> {
      const nudger = joinNudger(ref, member);
      return pollUntil(200, async () => {
        const s = await memberStatus(ref, member).catch((e: Error) => e);
        if (s instanceof Error) return nudger.nudge(`${member}: ${firstLine(s)}`);
        try {
          const me = find(await list(ref), ref, member);
          if (healthOf(s).healthy && me?.name === member)
            return done(`healthy, etcd ${s.version}, raft index ${s.raftIndex}${await nudger.done()}`);
          return waiting(
            `${member}: ${me ? (me.isLearner ? 'learner' : me.name ? 'no leader' : 'not started') : 'not a member'}`,
          );
        } catch (e) {
          return waiting(`${member}: ${firstLine(e)}`);
        }
      });
    },

    /** Is this member the leader right now? */
    async isLeader(ref: ClusterRef, member: string): Promise<boolean> {
      const me = find(await list(ref), ref, member);
      if (!me) return false;
      const s = await memberStatus(ref, member).catch(() => undefined);
      return s?.leader === me.ID;
    },

    /** Hands leadership from this member to a healthy voter (the one with the highest raft index). */
    async moveLeaderAway(ref: ClusterRef, member: string): Promise<string> {
      const members = await list(ref);
      const me = find(members, ref, member);
      if (!me) return 'not a member';
      const mine = await memberStatus(ref, member).catch(() => undefined);
      if (!mine || mine.leader !== me.ID) return 'not the leader';
      let best: { id: string; name: string; index: bigint } | undefined;
      for (const m of members.filter((x) => !x.isLearner && x.ID !== me.ID)) {
        const name = memberNameOf(m);
        const s = await memberStatus(ref, name).catch(() => undefined);
        if (s && (!best || BigInt(s.raftIndex) > best.index)) best = { id: m.ID, name, index: BigInt(s.raftIndex) };
      }
      if (!best) throw new Error(`no healthy voter to take leadership from ${member}`);
      const url = (await endpoints(ref))[member];
      // MoveLeader must be sent to the leader itself.
      await withEtcd([url], (c) => c.maintenance.moveLeader({ targetID: best!.id }, deadline(10000)), 10000);
      await recordEvent(
        kube,
        ref,
        'Normal',
        'LeaderMoved',
        `moved leadership from ${member} to ${best.name} before removing ${member}`,
        log,
      );
      return `leadership moved to ${best.name}`;
    },

    /** Changes the member's image in place (its data stays): the node restarts the container. */
    async setMemberImage(ref: ClusterRef, member: string, image: string): Promise<string> {
      const pod = await core.readNamespacedPod({ name: member, namespace: ref.namespace });
      const current = pod.spec?.containers.find((c) => c.name === 'etcd')?.image;
      if (current === image) return 'already set';
      await core.patchNamespacedPod(
        { name: member, namespace: ref.namespace, body: { spec: { containers: [{ name: 'etcd', image }] } } },
        setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
      );
      await recordEvent(
        kube,
        ref,
        'Normal',
        'MemberUpgrading',
        `restarting ${member} with ${image} (was ${current})`,
        log,
      );
      return `image ${current} → ${image}`;
    },

    /** Waits until the member serves on the new version, knows the leader and has caught up with it (alarms do not matter). */
    async waitMemberUpgraded(ref: ClusterRef, member: string, version: string): Promise<string> {
      const nudger = joinNudger(ref, member);
      // Every 200 ms as the other waits: a restart on the new image takes ~1 s, polling should not add half of it.
      return pollUntil(200, async () => {
        const s = await memberStatus(ref, member).catch((e: Error) => e);
        // The pod's own reason (an unknown image never starts) is what the upgrade's failure reports.
        const problem = s instanceof Error || s.version !== version ? await podSays(ref, member) : undefined;
        if (s instanceof Error) return nudger.nudge(`${member}: ${problem ?? firstLine(s)}`);
        if (s.version !== version || !healthOf(s).healthy) {
          const pod = problem ? `; pod: ${problem}` : '';
          return waiting(`${member} reports ${s.version}${s.leader === '0' ? ', no leader' : ''}${pod}`);
        }
        try {
          const members = await list(ref);
          const leader = members.find((m) => m.ID === s.leader);
          const ls = leader ? await memberStatus(ref, memberNameOf(leader)).catch(() => undefined) : undefined;
          const gap = ls ? BigInt(ls.raftIndex) - BigInt(s.raftAppliedIndex || s.raftIndex) : 0n;
          if (gap <= 100n) return done(`${member} runs ${version}, raft index ${s.raftIndex}${await nudger.done()}`);
          return waiting(`${member} on ${version}, catching up (${gap} behind)`);
        } catch (e) {
          return waiting(`${member}: ${firstLine(e)}`);
        }
      });
    },

    /**
     * etcd 3.6 refuses to replay v2 WAL entries (written by 3.4 and by the 3.4 → 3.5 switch-over):
     * write enough entries to one internal key that every member takes a snapshot past them.
     */
    async forceSnapshots(ref: ClusterRef): Promise<string> {
      const pods = await core.listNamespacedPod({
        namespace: ref.namespace,
        labelSelector: memberSelector(ref.name),
      });
      const counts = pods.items.map((p) => {
        const flag = p.spec?.containers[0]?.command?.find((a) => a.startsWith('--snapshot-count='));
        return flag ? Number(flag.split('=')[1]) : defaultSnapshotCount;
      });
      const entries = Math.max(...counts, 0) + 200;
      const key = '__kube-etcd-controller/snapshot-barrier';
      const eps = Object.values(await endpoints(ref));
      await withEtcd(
        eps,
        async (c) => {
          let next = 0;
          const worker = async () => {
            while (next < entries) {
              const i = next++;
              await c.put(key).value(String(i));
              if (i % 500 === 0) Context.current().heartbeat(`snapshot barrier ${i}/${entries}`);
            }
          };
          await Promise.all(Array.from({ length: 32 }, worker));
          await c.delete().key(key);
        },
        10000,
      );
      return `wrote ${entries} entries so every member snapshots past its v2 WAL entries`;
    },

    /** MemberRemove; absent counts as done. Refuses to remove the leader (move it first). */
    async removeMember(ref: ClusterRef, member: string, reason: string): Promise<string> {
      const members = await list(ref, [member]).catch(() => list(ref));
      const me = find(members, ref, member);
      if (!me) return 'already removed';
      const s = await memberStatus(ref, member).catch(() => undefined);
      if (s && s.leader === me.ID && members.filter((m) => !m.isLearner).length > 1) {
        throw new Error(`${member} is the leader: move leadership before removing it`);
      }
      const refused = { note: '' };
      await whileRefused(
        () => onCluster(ref, (c) => c.cluster.memberRemove({ ID: me.ID }, deadline(5000)), [member]),
        refused,
      );
      await recordEvent(kube, ref, 'Normal', 'MemberRemoved', `removed ${member} from etcd: ${reason}`, log);
      return refused.note ? `removed (${refused.note})` : 'removed';
    },

    /** Undoes a join that stopped before its promotion: removes the member while it is a learner (never a voter:
     *  a promoted member stays, its join finished). Says 'voter' when it stays, else what it did. */
    async removeLearner(
      ref: ClusterRef,
      member: string,
      reason: string,
    ): Promise<'voter' | 'removed' | 'not a member'> {
      const me = find(await list(ref, [member]).catch(() => list(ref)), ref, member);
      if (!me) return 'not a member';
      if (!me.isLearner) return 'voter';
      await onCluster(ref, (c) => c.cluster.memberRemove({ ID: me.ID }, deadline(5000)), [member]);
      await recordEvent(kube, ref, 'Normal', 'MemberRemoved', `removed learner ${member} from etcd: ${reason}`, log);
      return 'removed';
    },
  };
}
