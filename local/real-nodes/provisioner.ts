// The real-node stack's volume provisioner, its own process: the node agent's local-path logic (a host
// directory PV per claim of a class it serves; the kubelets mount them as hostPath). Not a third-party
// provisioner: see shared/notes/real-nodes.md (issue 15) for why.
//   provisioner.ts <kubeconfig> <volumes dir>
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig, StorageV1Api } from '@kubernetes/client-node';
import { pino } from 'pino';
import { LocalPathProvisioner } from '../node-agent/provisioner.js';

const [kubeconfig, dir] = process.argv.slice(2);
const log = pino({ name: 'provisioner' });
const kc = new KubeConfig();
kc.loadFromFile(kubeconfig);
const p = new LocalPathProvisioner(kc.makeApiClient(CoreV1Api), kc.makeApiClient(StorageV1Api), dir, log);
mkdirSync(dir, { recursive: true });
await p.start();
writeFileSync(join(dir, '.ready'), new Date().toISOString());
log.info({ dir }, 'provisioner ready');
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    p.close();
    process.exit(0);
  });
