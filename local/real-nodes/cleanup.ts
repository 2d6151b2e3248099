// Removes what real-node stacks left on the host after a killed run (CI clean-up, by hand):
//   tsx local/real-nodes/cleanup.ts <stack state folder>...
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cleanupRealNodes } from './host.js';

for (const dir of process.argv.slice(2)) {
  if (!existsSync(join(dir, 'nodes', 'net.json'))) continue;
  const found = await cleanupRealNodes(dir);
  console.log(`${dir}: ${found.length ? found.join('; ') : 'nothing left'}`);
}
