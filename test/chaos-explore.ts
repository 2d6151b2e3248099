// Explores random chaos seeds for as long as asked, one jest run per seed (each on its own stack), and
// prints every failing seed so it can join the fixed list in test/chaos.test.ts.
//   npm run chaos:explore -- 60        # minutes (default 30); CHAOS_FAULTS lengthens each plan
import { spawnSync } from 'node:child_process';

const minutes = Number(process.argv[2] ?? 30);
const until = Date.now() + minutes * 60_000;
const failed: number[] = [];
let runs = 0;
while (Date.now() < until) {
  const seed = Math.floor(Math.random() * 100000);
  const t0 = Date.now();
  console.log(`== chaos seed ${seed}`);
  const r = spawnSync('npx', ['jest', '--runInBand', '--forceExit', 'test/chaos.test.ts'], {
    stdio: 'inherit',
    env: { ...process.env, CHAOS_SEEDS: String(seed), NODE_OPTIONS: '--experimental-vm-modules' },
  });
  runs++;
  if (r.status !== 0) failed.push(seed);
  console.log(
    `== chaos seed ${seed}: ${r.status === 0 ? 'passed' : 'FAILED'} in ${((Date.now() - t0) / 1000).toFixed(0)} s`,
  );
}
console.log(`${runs} seed(s) in ${minutes} min; failing seeds: ${failed.length ? failed.join(', ') : 'none'}`);
process.exit(failed.length ? 1 : 0);
