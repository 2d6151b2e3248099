// Build step (`npm run build`, after tsc): the workflow bundle, then the controller's entry point bundled with the
// Kubernetes client and minified. Loaded as tsc leaves it, @kubernetes/client-node costs ~50 MB of RSS (issue 17):
// V8 keeps every module's source and the generated API and model files (2,556 of them, every API group) are
// 30 MB of JavaScript, mostly comments; bundled and minified it is ~20 MB. Only that package is bundled: the
// Temporal SDK (native core, worker threads loading their own files), gRPC and the rest load from node_modules.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';
import { bundleWorkflowCode } from '@temporalio/worker';
import { workflowBundlePath } from './workflow-bundle.js';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..');
const bundled = '@kubernetes/client-node';

/** Every package import stays an import, except the Kubernetes client's own (its dependencies stay imports too). */
const onlyKubernetesClient: Plugin = {
  name: 'only-kubernetes-client',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) =>
      args.path === bundled || args.path.startsWith(`${bundled}/`) ? undefined : { path: args.path, external: true },
    );
  },
};

// The worker keeps the bundle's inline source map in both threads (stack traces of workflow errors map through it);
// the sources' text in it (sourcesContent, two thirds of the map) is read only with the worker option
// showStackTraceSources, which the controller does not set: file, line and column stay.
const { code } = await bundleWorkflowCode({
  workflowsPath: join(dist, 'workflows', 'index.js'),
  webpackConfigHook: (config) => ({ ...config, devtool: 'inline-nosources-source-map' }),
});
writeFileSync(workflowBundlePath, code);
console.log(`workflow bundle: ${workflowBundlePath} (${(code.length / 1048576).toFixed(2)} MB)`);

// Replaces tsc's dist/controller/main.js (the image's ENTRYPOINT); the other compiled files stay for the CLI,
// the backup tool and the tests. Same folder, so the entry's own paths (deploy/crd.yaml, the workflow bundle) hold.
// Built from the TypeScript sources (isolatedModules: esbuild compiles each file as tsc does): tsc's incremental
// build re-emits only changed files, so its main.js may still be the previous bundle.
const outfile = join(dist, 'controller', 'main.js');
const out = await build({
  entryPoints: [join(dist, '..', 'controller', 'main.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  minifyWhitespace: true,
  minifySyntax: true,
  keepNames: true, // class and function names as written: logs, errors and stack traces read the same
  legalComments: 'none',
  sourcemap: true,
  metafile: true,
  plugins: [onlyKubernetesClient],
  logLevel: 'warning',
});
const size = Object.values(out.metafile.outputs).find((o) => o.entryPoint)?.bytes ?? 0;
console.log(`controller bundle: ${outfile} (${(size / 1048576).toFixed(2)} MB)`);
