// Entry point of the node agent process (started by the local stack).
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { NodeAgent } from './agent.js';
import { parseHostService } from './host-services.js';

const { values } = parseArgs({
  options: {
    kubeconfig: { type: 'string' },
    'state-dir': { type: 'string' },
    nodes: { type: 'string', default: '3' },
    service: { type: 'string', multiple: true, default: [] },
  },
});
if (!values.kubeconfig || !values['state-dir']) {
  console.error(
    'usage: node-agent --kubeconfig FILE --state-dir DIR [--nodes N] [--service name=host[,host]:port=targetHost:targetPort ...]',
  );
  process.exit(2);
}
const log = pino({ name: 'node-agent' });
const agent = new NodeAgent({
  kubeconfig: values.kubeconfig,
  stateDir: values['state-dir'],
  nodes: Number(values.nodes),
  log,
  services: values.service.map(parseHostService),
});
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    log.info({ signal: sig }, 'stopping: ending pods and removing the pod network');
    agent.stop().then(
      () => process.exit(0),
      (e) => {
        log.error({ err: (e as Error).message }, 'stop failed');
        process.exit(1);
      },
    );
  });
}
agent.start().catch(async (e) => {
  log.error({ err: (e as Error).message, stack: (e as Error).stack }, 'node agent failed to start');
  await agent.stop().catch(() => undefined); // leave no bridge or namespace behind
  process.exit(1);
});
