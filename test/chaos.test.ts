// Chaos: a seeded random plan of faults against a 3-member cluster under continuous writes.
// Every acknowledged write must be read back; after each fault the cluster returns to its spec
// (the time it took is reported, not asserted). CI runs a fixed list of seeds (CHAOS_SEEDS overrides
// it, CHAOS_SEED=<n> replays one); CHAOS_FAULTS makes a plan longer (by default each kind of fault once).
// Random seeds are explored apart from CI: `npm run chaos:explore -- <minutes>` (test/chaos-explore.ts).
import { pins } from '../local/toolchain.js';
import { clusters, clusterWriter, converged, kubectl, membership, TestController } from './support/controller.js';
import { eventually, sleep, startTestStack, type TestStack } from './support/stack.js';

let t: TestStack;
// The worker and the watcher as separate processes, so each can be killed on its own.
let worker: TestController;
let watcher: TestController;
/** Seeds that once failed and stay in CI: 66080 (a resize left two of three members on one node), 42918
 *  (a member moved after a node restart joined the just-upgraded 3.6 cluster and stalled before the join nudge). */
const fixedSeeds = [66080, 42918];
const seeds = (process.env.CHAOS_SEEDS ?? process.env.CHAOS_SEED ?? fixedSeeds.join(',')).split(',').map(Number);
const faultCount = Number(process.env.CHAOS_FAULTS ?? 9);

/** mulberry32: a tiny seeded PRNG, so a failing plan can be replayed from its seed. */
function rng(s: number) {
  return () => {
    s |= 0;
    s = (s + 0x6d2b79f5) | 0;
    let r = Math.imul(s ^ (s >>> 15), 1 | s);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

beforeAll(async () => {
  t = await startTestStack({ nodes: 3 });
  worker = new TestController(t, 'worker');
  watcher = new TestController(t, 'watcher');
  worker.start({ KEC_ROLE: 'worker' });
  watcher.start({ KEC_ROLE: 'watcher' });
  await eventually('EtcdCluster CRD served', async () => (await kubectl(t, 'get', 'etcdclusters')).code === 0, 60000);
  await eventually(
    'default service account',
    () => t.core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' }),
    60000,
  );
});
afterAll(async () => {
  await watcher?.stop();
  await worker?.stop();
  await t?.stop();
});

/** `majority` is set at injection when the fault took a majority of the voters: the cluster cannot heal
 *  while it lasts (their data still exists), so the test ends the fault first, then expects recovery. */
type Fault = { name: string; inject: () => Promise<void>; after?: () => Promise<void>; majority?: boolean };

test.each(seeds)(
  'seeded chaos (seed %i): no acknowledged write is lost and the cluster returns to spec after every fault',
  async (seed) => {
    console.log(`chaos seed ${seed} (replay with CHAOS_SEED=${seed}), ${faultCount} faults`);
    const name = `chaos-${seed}`;
    const random = rng(seed);
    const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)];
    await clusters(t).createFromSpec(name, { size: 3, version: pins.ETCD35_VERSION });
    await converged(t, name, 3);
    const writer = clusterWriter(t, name);
    const member = async () => pick((await membership(t, name)).pods);
    const leader = async () => (await membership(t, name)).leader!;
    const cutNetworkFor8s = (which: () => Promise<string>) => async () => {
      const pod = await which();
      await t.nodes.cutNetwork('default', pod);
      await sleep(8000);
      await t.nodes.restoreNetwork('default', pod);
    };
    const restartAfter3s = (ctl: TestController, role: string) => async () => {
      await ctl.kill();
      await sleep(3000);
      ctl.start({ KEC_ROLE: role });
    };
    const faults: Record<string, () => Fault> = {
      'crash a member process': () => ({
        name: 'crash a member process',
        inject: async () => {
          await t.nodes.crash('default', await member());
        },
      }),
      'delete a member pod': () => ({
        name: 'delete a member pod',
        inject: async () => {
          await t.core.deleteNamespacedPod({ name: await member(), namespace: 'default' });
        },
      }),
      "cut a member's network for 8 s": () => ({
        name: "cut a member's network for 8 s",
        inject: cutNetworkFor8s(member),
      }),
      "cut the leader's network for 8 s": () => ({
        name: "cut the leader's network for 8 s",
        inject: cutNetworkFor8s(leader),
      }),
      'kill the worker': () => ({ name: 'kill the worker', inject: restartAfter3s(worker, 'worker') }),
      'kill the watcher': () => ({ name: 'kill the watcher', inject: restartAfter3s(watcher, 'watcher') }),
      // The toolchain holds one patch release per minor, so the upgrade fault is the minor step, once.
      'upgrade etcd 3.5 → 3.6': () => ({
        name: 'upgrade etcd 3.5 → 3.6',
        inject: async () => {
          await clusters(t).patchSpec(name, { version: pins.ETCD36_VERSION });
          await eventually(
            'upgraded',
            async () => (await clusters(t).get(name))?.status.currentVersion === pins.ETCD36_VERSION,
            300000,
            1000,
          );
        },
      }),
      "stop a member's node": () => {
        let node = '';
        const fault: Fault = {
          name: "stop a member's node",
          inject: async () => {
            const p = await member();
            node = (await t.nodes.pod('default', p))!.node;
            const onNode = (await t.nodes.pods()).filter(
              (x) => x.node === node && x.name.startsWith(`${name}-`),
            ).length;
            fault.majority = onNode >= 2; // of 3 voters
            if (fault.majority)
              console.log(
                `stopping ${node} takes ${onNode} of 3 members: a real quorum loss, healed by starting the node again`,
              );
            await t.nodes.stopNode(node);
          },
          after: async () => {
            await t.nodes.startNode(node);
          },
        };
        return fault;
      },
      'resize 3 → 4 → 3': () => ({
        name: 'resize 3 → 4 → 3',
        inject: async () => {
          await clusters(t).patchSpec(name, { size: 4 });
          await converged(t, name, 4, 240000);
          await clusters(t).patchSpec(name, { size: 3 });
        },
      }),
    };
    const kinds = Object.keys(faults);
    const once = ['upgrade etcd 3.5 → 3.6'];
    const repeatable = kinds.filter((k) => !once.includes(k));
    // Every repeatable kind once in a seeded order, then seeded picks; the upgrade stays the last fault so
    // that recorded seeds keep their plans (joins on an upgraded 3.6 cluster are test/upgrade.test.ts's, and
    // a member move after a node restart can still land on 3.6: seed 42918).
    const order = [...repeatable];
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    const plan = Array.from({ length: Math.max(0, faultCount - once.length) }, (_, i) =>
      i < order.length ? order[i] : pick(repeatable),
    );
    plan.push(...once.slice(0, faultCount));
    const report: string[] = [];
    for (let i = 0; i < plan.length; i++) {
      const fault = faults[plan[i]]();
      const t0 = Date.now();
      await fault.inject();
      await sleep(1000);
      if (fault.majority) await fault.after?.();
      const m = await converged(t, name, 3, 300000);
      const seconds = (Date.now() - t0) / 1000;
      if (!fault.majority) await fault.after?.();
      report.push(
        `${String(i + 1).padStart(2)}. ${fault.name.padEnd(42)} back to spec in ${seconds.toFixed(1)} s (members ${m.pods.join(', ')})`,
      );
      console.log(report[report.length - 1]);
    }
    await writer.stop();
    const final = await converged(t, name, 3);
    const lost = await writer.lost(final.ips);
    console.log(
      [
        `chaos seed ${seed}: ${faultCount} faults injected`,
        ...report,
        `writes acknowledged: ${writer.acked.length}, failed after retries: ${writer.failed}, lost: ${lost.length}`,
      ].join('\n'),
    );
    expect(lost).toEqual([]);
    expect(final.members).toEqual(final.pods);
    await eventually('status Running', async () => (await clusters(t).get(name))?.status.phase === 'Running', 60000);
    // After the faults (node stops and restarts included) no node may be left holding a majority.
    await eventually(
      'members spread over nodes',
      async () =>
        (await clusters(t).get(name))?.status.conditions?.find((c) => c.type === 'MembersSpread')?.status === 'True',
      120000,
      1000,
    );
    await clusters(t).delete(name);
    await eventually(`${name} deleted`, async () => !(await clusters(t).get(name)), 120000, 1000);
  },
  1800000,
);
