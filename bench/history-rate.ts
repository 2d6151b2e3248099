// `npx tsx bench/history-rate.ts`: events per hour that one cluster adds to its cluster workflow's history
// (issue 13, item 6), summed over every run of the workflow ID (continue-as-new included), for:
//   idle       a healthy 3-member cluster, nothing happening (the 10 s health check)
//   flapping   the same with one member pod's Ready condition flipping every second (watcher pokes)
//   awaited    flapping while a long operation is awaited (a join held at its pod start by an unknown image)
// Also per hour: workflow tasks, activity tasks and local activities (the controller's per-cluster work). Each phase
// lasts HISTORY_PHASE_SECONDS (default 120); figures are extrapolated to an hour. Prints a table.
import { mergePatch } from '../activities/kube.js';
import { clusters, converged } from '../test/support/controller.js';
import { eventually, sleep } from '../test/support/stack.js';
import { clusterWorkflowId } from '../api/names.js';
import { benchWithController } from './harness.js';

const phaseSeconds = Number(process.env.HISTORY_PHASE_SECONDS ?? 120);
const name = 'hist';

benchWithController(async ({ t, temporal: client }) => {
  const workflowId = clusterWorkflowId({ namespace: 'default', name });
  /** Every event of every run of the cluster workflow so far, by kind: workflow tasks, activity tasks (scheduled),
   *  local activities (markers other than patches) and all events. */
  const events = async (): Promise<{ total: number; runs: number; wft: number; activities: number; local: number }> => {
    const n = { total: 0, runs: 0, wft: 0, activities: 0, local: 0 };
    for await (const w of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) {
      for (const e of (await client.workflow.getHandle(workflowId, w.runId).fetchHistory()).events ?? []) {
        n.total++;
        if (e.workflowTaskScheduledEventAttributes) n.wft++;
        if (e.activityTaskScheduledEventAttributes) n.activities++;
        if (e.markerRecordedEventAttributes && e.markerRecordedEventAttributes.markerName !== 'core_patch') n.local++;
      }
      n.runs++;
    }
    return n;
  };
  let flapping = false;
  const flap = async (pod: string) => {
    for (let ready = false; flapping; ready = !ready) {
      const now = new Date().toISOString();
      const conditions = [{ type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: now }];
      await t.core
        .patchNamespacedPodStatus({ name: pod, namespace: 'default', body: { status: { conditions } } }, mergePatch())
        .catch(() => undefined);
      await sleep(1000);
    }
  };
  const rows: string[] = [];
  const measure = async (phase: string) => {
    const a = await events();
    await sleep(phaseSeconds * 1000);
    const b = await events();
    const perHour = (k: 'total' | 'wft' | 'activities' | 'local') => Math.round(((b[k] - a[k]) * 3600) / phaseSeconds);
    rows.push(
      `| ${phase} | ${b.total - a.total} in ${phaseSeconds} s | ${perHour('total')} | ${perHour('wft')} | ` +
        `${perHour('activities')} | ${perHour('local')} | ${b.runs - a.runs} |`,
    );
    console.log(rows[rows.length - 1]);
  };
  await clusters(t).createFromSpec(name, { size: 3 });
  const m = await converged(t, name, 3);
  await sleep(15000); // let creation's status writes settle
  await measure('idle');
  flapping = true;
  let flapper = flap(m.pods[0]);
  await measure('flapping pod, idle loop');
  flapping = false;
  await flapper;
  await clusters(t).patchSpec(name, { size: 4, repository: 'example.invalid/etcd' });
  const step = async () =>
    ((await clusters(t).get(name))?.status.currentOperation as { step?: string } | null)?.step ?? '';
  await eventually('join held at its pod start', async () => step().then((s) => s.startsWith('start pod')), 120000);
  flapping = true;
  flapper = flap(m.pods[0]);
  await measure('flapping pod, long operation awaited');
  flapping = false;
  await flapper;
  console.log(
    '\n| phase | events | events per hour | workflow tasks per hour | activity tasks per hour | local activities per hour ' +
      `| new runs (continue-as-new) |\n|---|---|---|---|---|---|---|\n${rows.join('\n')}`,
  );
});
