// The workflow bundle: built once by `npm run build` (bundle.ts writes dist/workflow-bundle.js) and loaded by the
// compiled controller.
// Bundling at start (webpack in the controller's own process) costs ~140 MB of RSS that is never given back and
// seconds of CPU at every start; from source (tsx: dev and tests) the worker still bundles the current code.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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
