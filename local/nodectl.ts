// `npm run nodes -- <command>`: the local stack's pods on its real nodes, and faults injected by hand (the same
// calls the tests make, local/real-nodes/faults.ts). KEC_STATE_DIR selects the stack (default .local).
//   pods | logs <ns>/<pod> <container> | crash <ns>/<pod> [container] | restart-pod <ns>/<pod>
//   cut <ns>/<pod> | restore <ns>/<pod> | cut-host <ns>/<pod> | restore-host <ns>/<pod> | stop-node <node> | start-node <node>
import { join, resolve } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { NodeFaults } from './real-nodes/faults.js';
import { NodeHost } from './real-nodes/node-host.js';

const usage =
  'usage: npm run nodes -- pods | logs <ns>/<pod> <container> | crash <ns>/<pod> [container] | restart-pod <ns>/<pod> |\n' +
  '         cut <ns>/<pod> | restore <ns>/<pod> | cut-host <ns>/<pod> | restore-host <ns>/<pod> |\n' +
  '         stop-node <node> | start-node <node>        (KEC_STATE_DIR selects the stack, default .local)';

const [cmd, target, container] = process.argv.slice(2);
const [ns, pod] = (target ?? '').includes('/') ? target.split('/') : ['default', target];

async function main(): Promise<void> {
  const stateDir = resolve(process.env.KEC_STATE_DIR ?? '.local');
  const kc = new KubeConfig();
  kc.loadFromFile(join(stateDir, 'kubeconfig'));
  const faults = new NodeFaults(NodeHost.attach(stateDir), kc);
  const needs = (what: string) => {
    if (!target) throw new Error(`${cmd}: name the ${what}\n${usage}`);
  };
  const out = (x: unknown) => console.log(typeof x === 'string' ? x : JSON.stringify(x));
  switch (cmd) {
    case 'pods':
      for (const p of await faults.pods()) console.log(`${p.namespace}/${p.name}\t${p.node}\t${p.ip ?? '-'}`);
      return;
    case 'logs':
      needs('pod');
      if (!container) throw new Error(`logs: name the container (kubectl logs works too)\n${usage}`);
      return void process.stdout.write(await faults.logs(ns, pod, container));
    case 'crash':
      return (needs('pod'), out(await faults.crash(ns, pod, container)));
    case 'restart-pod':
      return (needs('pod'), out(await faults.restartPod(ns, pod)));
    case 'cut':
      return (needs('pod'), out(await faults.cutNetwork(ns, pod)));
    case 'restore':
      return (needs('pod'), out(await faults.restoreNetwork(ns, pod)));
    case 'cut-host':
      return (needs('pod'), out(await faults.cutHostPath(ns, pod)));
    case 'restore-host':
      return (needs('pod'), out(await faults.restoreHostPath(ns, pod)));
    case 'stop-node':
      return (needs('node'), out(await faults.stopNode(target)));
    case 'start-node':
      return (needs('node'), out(await faults.startNode(target)));
    default:
      console.error(usage);
      process.exit(2);
  }
}

main().catch((e) => {
  console.error((e as Error).message);
  process.exit(1);
});
