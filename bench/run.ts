// `npm run bench`: operation timings on the local stack, min / median / max over BENCH_RUNS runs
// (default 3), next to the floor measured in the same run: a 3-member etcd started by hand.
// Writes bench/results/latest.json and latest.md and prints the table.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { etcdBinDir, pins } from '../local/toolchain.js';
import { clusters, converged, TestController } from '../test/support/controller.js';
import { eventually, startTestStack } from '../test/support/stack.js';

const runs = Number(process.env.BENCH_RUNS ?? 3);
const results: Record<string, number[]> = {};
const record = (k: string, ms: number) => { (results[k] ??= []).push(ms); console.log(`  ${k}: ${(ms / 1000).toFixed(2)} s`); };

async function quorumRead(ips: string[]): Promise<void> {
  const c = new Etcd3({ hosts: ips, dialTimeout: 2000 });
  try { await c.get('bench-probe').string(); } finally { c.close(); }
}

/** The floor: three etcd processes with a static --initial-cluster on loopback, no Kubernetes, no controller. */
async function floor(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'kec-floor-'));
  const bin = join(etcdBinDir(pins.ETCD35_VERSION), 'etcd');
  const base = 32379 + Math.floor(Math.random() * 1000) * 3;
  const names = [0, 1, 2].map((i) => `f${i}`);
  const peer = (i: number) => `http://127.0.0.1:${base + 100 + i}`;
  const client = (i: number) => `http://127.0.0.1:${base + i}`;
  const t0 = Date.now();
  const procs = names.map((n, i) => spawn(bin, [`--name=${n}`, `--data-dir=${join(dir, n)}`, `--listen-client-urls=${client(i)}`, `--advertise-client-urls=${client(i)}`,
    `--listen-peer-urls=${peer(i)}`, `--initial-advertise-peer-urls=${peer(i)}`, `--initial-cluster=${names.map((m, j) => `${m}=${peer(j)}`).join(',')}`,
    '--initial-cluster-state=new', '--log-level=error'], { stdio: 'ignore' }));
  try {
    await eventually('floor cluster serving', async () => { await quorumRead([0, 1, 2].map(client)); return true; }, 60000, 50);
    return Date.now() - t0;
  } finally {
    for (const p of procs) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  console.log(`benchmark: ${runs} run(s)`);
  const t = await startTestStack({ nodes: 3 });
  const ctl = new TestController(t);
  ctl.start();
  try {
    await eventually('CRD', async () => { await clusters(t).get('none'); return true; }, 60000);
    await eventually('default service account', () => t.core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' }), 60000);
    for (let r = 0; r < runs; r++) {
      console.log(`run ${r + 1}/${runs}`);
      record('floor: 3-member etcd by hand (static config)', await floor());
      const name = `bench-${r}`;
      let t0 = Date.now();
      await clusters(t).create({ apiVersion: 'coreos.com/v1', kind: 'EtcdCluster', metadata: { name }, spec: { size: 3 } });
      let m = await converged(t, name, 3, 300000);
      await quorumRead(m.ips);
      record('create 3 members → healthy + quorum read', Date.now() - t0);
      t0 = Date.now();
      await t.core.deleteNamespacedPod({ name: m.pods[0], namespace: 'default' });
      await eventually('replaced', async () => { const x = await converged(t, name, 3, 1).catch(() => undefined); return x && !x.pods.includes(m.pods[0]) ? x : undefined; }, 300000, 200);
      record('member pod deleted → full healthy size', Date.now() - t0);
      t0 = Date.now();
      await clusters(t).patchSpec(name, { size: 5 });
      m = await converged(t, name, 5, 300000);
      record('resize 3 → 5', Date.now() - t0);
      t0 = Date.now();
      await clusters(t).patchSpec(name, { size: 3 });
      m = await converged(t, name, 3, 300000);
      record('resize 5 → 3', Date.now() - t0);
      await clusters(t).delete(name);
      await eventually('deleted', async () => !(await clusters(t).get(name)), 120000);
    }
  } finally {
    await ctl.stop();
    await t.stop();
  }
  const stats = Object.fromEntries(Object.entries(results).map(([k, v]) => {
    const s = [...v].sort((a, b) => a - b);
    return [k, { min: s[0], median: s[Math.floor(s.length / 2)], max: s[s.length - 1], runs: s.length }];
  }));
  const floorMedian = stats['floor: 3-member etcd by hand (static config)'].median;
  const rows = Object.entries(stats).map(([k, s]) => `| ${k} | ${(s.min / 1000).toFixed(2)} | ${(s.median / 1000).toFixed(2)} | ${(s.max / 1000).toFixed(2)} | ${(s.median / floorMedian).toFixed(1)}× |`);
  const md = ['| operation | min s | median s | max s | median / floor |', '|---|---|---|---|---|', ...rows].join('\n');
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/latest.json', JSON.stringify({ date: new Date().toISOString(), runs, stats }, null, 2));
  writeFileSync('bench/results/latest.md', md + '\n');
  console.log(`\n${md}`);
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
