// Safe evolution: every recorded history (test/replay/histories, made by test/replay/capture.ts) must
// replay against the current workflow code. A change that reorders, adds or drops a command fails here
// with a DeterminismViolationError; guard such changes with patched('<name>') (README, "Changing workflows").
// Pure: no stack, no server.
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils.js';
import { bundleWorkflows, quietTemporalRuntime } from './support/workflows.js';

const here = dirname(fileURLToPath(import.meta.url));
const dir = join(here, 'replay', 'histories');
// One folder per capture (named after the commit it was recorded on), every one kept.
const files = readdirSync(dir, { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.json.gz'))
  .sort();
let bundle: WorkflowBundleWithSourceMap;

beforeAll(async () => {
  quietTemporalRuntime();
  bundle = await bundleWorkflows();
}, 120000);

test('the recorded histories cover the cluster loop and every operation of the scenario', () => {
  const types = new Set(files.map((f) => basename(f).split('--')[0]));
  for (const t of [
    'etcdClusterWorkflow',
    'createCluster',
    'resizeCluster',
    'replaceMember',
    'backupCluster',
    'recoverCluster',
    'upgradeCluster',
    'destroyCluster',
  ])
    expect(types).toContain(t);
});

test('every recorded history replays against the current workflow code', async () => {
  const histories = files.map((f) => ({
    workflowId: f,
    history: historyFromJSON(JSON.parse(gunzipSync(readFileSync(join(dir, f))).toString('utf8'))),
  }));
  const failures: string[] = [];
  for await (const r of Worker.runReplayHistories({ workflowBundle: bundle, replayName: 'replay-test' }, histories)) {
    if (r.error) failures.push(`${r.workflowId}: ${r.error.name}: ${r.error.message}`);
  }
  expect(failures).toEqual([]);
}, 120000);
