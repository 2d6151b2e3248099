// The workflow bundle: built once by `npm run build` (dist/workflow-bundle.js) and loaded by the compiled controller.
// Bundling at start (webpack in the controller's own process) costs ~140 MB of RSS that is never given back and
// seconds of CPU at every start; from source (tsx: dev and tests) the worker still bundles the current code.
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode } from '@temporalio/worker';

const here = dirname(fileURLToPath(import.meta.url));
const compiled = fileURLToPath(import.meta.url).endsWith('.js');
/** Where the build writes the bundle: next to the compiled folders (dist/workflow-bundle.js). */
export const workflowBundlePath = join(here, '..', 'workflow-bundle.js');
const workflowsPath = join(here, '..', 'workflows', compiled ? 'index.js' : 'index.ts');

/** The worker's workflow code: the prebuilt bundle when running compiled and it exists, else the sources. */
export function workflowCode(): { workflowBundle: { codePath: string } } | { workflowsPath: string } {
  return compiled && existsSync(workflowBundlePath)
    ? { workflowBundle: { codePath: workflowBundlePath } }
    : { workflowsPath };
}

// `node dist/controller/workflow-bundle.js` (npm run build): writes the bundle of the compiled workflows.
if (compiled && process.argv[1] === fileURLToPath(import.meta.url)) {
  const { code } = await bundleWorkflowCode({ workflowsPath });
  writeFileSync(workflowBundlePath, code);
  console.log(`workflow bundle: ${workflowBundlePath} (${(code.length / 1048576).toFixed(2)} MB)`);
}
