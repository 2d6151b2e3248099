// `npm start`: the default local stack in .local/ (state kept between runs), in the foreground.
import { resolve } from 'node:path';
import { join } from 'node:path';
import { ManagedProcess } from './process.js';
import { LocalStack } from './stack.js';
import { tsEntry } from './toolchain.js';

const stateDir = resolve(process.env.KEC_STATE_DIR ?? '.local');
// 3 real nodes (kubelet + containerd each) unless KEC_NODES names another count.
const choice = process.env.KEC_NODES ?? '3';
const nodes = Number(choice);
if (!/^\d+$/.test(choice) || nodes > 16) {
  console.error(`KEC_NODES=${choice}: expected a number of real nodes, 0 to 16`);
  process.exit(2);
}

async function main(): Promise<void> {
  const t0 = Date.now();
  console.log(`starting the local stack in ${stateDir} ...`);
  const stack = await LocalStack.start({
    stateDir,
    ports: 'default',
    nodes,
    ui: true,
    log: (m) => console.log(`  ${m}`),
  });
  // The controller (worker + watcher) runs beside the stack unless KEC_NO_CONTROLLER=1.
  let controller: ManagedProcess | undefined;
  if (process.env.KEC_NO_CONTROLLER !== '1') {
    const [cmd, ...args] = tsEntry('controller/main.ts');
    controller = new ManagedProcess({
      name: 'controller',
      cmd,
      args,
      logFile: join(stack.logsDir, 'controller.log'),
      env: { ...process.env, KUBECONFIG: stack.kubeconfig, TEMPORAL_ADDRESS: stack.temporalAddress },
    });
  }
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${sig}: stopping the local stack ...`);
    (controller ? controller.stop() : Promise.resolve())
      .then(() => stack.stop())
      .then(
        () => {
          console.log('stopped.');
          process.exit(0);
        },
        (e) => {
          console.error(e);
          process.exit(1);
        },
      );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  console.log(
    [
      '',
      `local stack ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
      `  kubeconfig:       ${stack.kubeconfig}`,
      `                    export KUBECONFIG=${stack.kubeconfig}`,
      `  kube-apiserver:   ${stack.apiserverUrl}`,
      `  Temporal:         ${stack.temporalAddress} (namespace default)`,
      `  Temporal Web UI:  ${stack.uiUrl}`,
      `  S3 (versitygw):    ${stack.s3.endpoint}, from pods ${stack.s3.podEndpoint}, bucket ${stack.s3.bucket} ` +
        `(keys: ${join(stack.opts.stateDir, 'pki', 's3.json')})`,
      `  nodes:            ${nodes} real (kubelet + containerd; pod logs: kubectl logs; faults: npm run nodes)`,
      `  controller:       ${controller ? `running (log: ${join(stack.logsDir, 'controller.log')})` : 'not started (KEC_NO_CONTROLLER=1): npm run controller'}`,
      `  component logs:   ${stack.logsDir}`,
      '',
      'Ctrl-C stops everything.',
    ].join('\n'),
  );
}

main().catch((e) => {
  console.error(`npm start failed: ${(e as Error).message}`);
  process.exit(1);
});
