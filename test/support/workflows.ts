// The product's workflows for tests without a stack (replay, workflow tests): Temporal's runtime quiet, one bundle.
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode, DefaultLogger, Runtime, type WorkflowBundleWithSourceMap } from '@temporalio/worker';

/** Temporal's runtime logs warnings only; call first, before any worker or test environment exists. */
export function quietTemporalRuntime(): void {
  Runtime.install({ logger: new DefaultLogger('WARN') });
}

/** workflows/index.ts bundled as the worker bundles it. */
export function bundleWorkflows(): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({
    workflowsPath: fileURLToPath(new URL('../../workflows/index.ts', import.meta.url)),
    logger: new DefaultLogger('WARN'),
  });
}
