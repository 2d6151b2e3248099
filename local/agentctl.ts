// `npm run agent -- <command>`: inspect the node agent's pods and inject faults by hand.
//   pods | logs <ns>/<pod> [container] | crash <ns>/<pod> [container] | restart-pod <ns>/<pod> | cut <ns>/<pod> | restore <ns>/<pod>
//   stop-node <node> | start-node <node>          (KEC_STATE_DIR selects the stack, default .local)
import { join, resolve } from 'node:path';
import { AgentClient } from './agent-client.js';

const [cmd, target, container] = process.argv.slice(2);
const client = new AgentClient(join(resolve(process.env.KEC_STATE_DIR ?? '.local'), 'agent'));
const [ns, pod] = (target ?? '').includes('/') ? target.split('/') : ['default', target];

async function main(): Promise<void> {
  switch (cmd) {
    case 'pods':
      for (const p of await client.pods())
        console.log(`${p.namespace}/${p.name}\t${p.node}\t${p.ip ?? '-'}\tpid ${p.pid ?? '-'}`);
      return;
    case 'logs':
      process.stdout.write(await client.logs(ns, pod, container ?? (await firstContainer())));
      return;
    case 'crash':
      console.log(await client.crash(ns, pod, container));
      return;
    case 'restart-pod':
      console.log(await client.restartPod(ns, pod));
      return;
    case 'cut':
      console.log(await client.cutNetwork(ns, pod));
      return;
    case 'restore':
      console.log(await client.restoreNetwork(ns, pod));
      return;
    case 'stop-node':
      console.log(await client.stopNode(target));
      return;
    case 'start-node':
      console.log(await client.startNode(target));
      return;
    default:
      console.error(
        'usage: agentctl pods | logs <ns>/<pod> [container] | crash <ns>/<pod> [container] | restart-pod <ns>/<pod> | ' +
          'cut <ns>/<pod> | restore <ns>/<pod> | stop-node <node> | start-node <node>',
      );
      process.exit(2);
  }
}

async function firstContainer(): Promise<string> {
  const { readdirSync } = await import('node:fs');
  const p = await client.pod(ns, pod);
  const f = p ? readdirSync(p.logDir).find((x) => x.endsWith('.log')) : undefined;
  if (!f) throw new Error(`no container logs for ${ns}/${pod}`);
  return f.replace(/\.log$/, '');
}

main().catch((e) => {
  console.error((e as Error).message);
  process.exit(1);
});
