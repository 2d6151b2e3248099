// `npm start`: the default local stack in .local/ (state kept between runs), in the foreground.
import { resolve } from 'node:path';
import { join } from 'node:path';
import { ManagedProcess } from './process.js';
import { LocalStack } from './stack.js';
import { tsEntry } from './toolchain.js';

const stateDir = resolve(process.env.KEC_STATE_DIR ?? '.local');
// 3 real nodes (kubelet + containerd) by default (issue 15); KEC_NODES=agent or a number: that many node-agent nodes.
const choice = process.env.KEC_NODES ?? 'real';
const real = choice === 'real';
const nodes = real || choice === 'agent' ? 3 : Number(choice);
if (!Number.isInteger(nodes) || nodes < 0) {
  console.error(`KEC_NODES=${choice}: expected real, agent or a number of node-agent nodes`);
  process.exit(2);
}

async function main(): Promise<void> {
  const t0 = Date.now();
  console.log(`starting the local stack in ${stateDir} ...`);
  const stack = await LocalStack.start({
    stateDir,
    ports: 'default',
    nodes,
    runtime: real ? 'real' : 'agent',
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
      real
        ? `  nodes:            ${nodes} real (kubelet + containerd; pod logs: kubectl logs; node logs in the component logs)`
        : `  nodes:            ${nodes} (node agent; pod logs: npm run agent -- logs <ns>/<pod>)`,
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
