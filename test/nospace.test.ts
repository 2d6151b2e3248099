// NOSPACE on the real stack: a cluster filled to its quota is reported (Alarm condition), still serves
// reads and is never "restored" although backups and automatic restore are on; the operator's runbook
// (compact, defragment one member at a time leader last, disarm) makes writes work again, nothing lost.
import { Etcd3 } from 'etcd3';
import { pins } from '../local/toolchain.js';
import { clusters, converged, membership, missingKeys, TestController, startStackWithController, writeKeys } from './support/controller.js';
import { etcdctl } from './support/etcdctl.js';
import { eventually, sleep, type TestStack } from './support/stack.js';
import { quorumLossGraceMs } from '../workflows/plan.js';

let t: TestStack;
let ctl: TestController;
const name = 'full';
const alarmOf = async () => (await clusters(t).get(name))?.status.conditions?.find((c) => c.type === 'Alarm');

beforeAll(async () => { ({ t, ctl } = await startStackWithController()); });
afterAll(async () => { await ctl?.stop(); await t?.stop(); });

test('NOSPACE: reported, not restored; compact + defrag one member at a time + disarm, then writes work and every acknowledged write reads back', async () => {
  // Compaction off, so only the runbook frees space; a 1 MiB quota fills in a few dozen writes.
  await clusters(t).create({ apiVersion: 'coreos.com/v1', kind: 'EtcdCluster', metadata: { name }, spec: {
    size: 3, version: pins.ETCD36_VERSION, etcd: { autoCompactionRetention: '0', quotaBackendBytes: 1 << 20 },
    backup: { maxSnapshot: 2, snapshotIntervalInSecond: 3600 } } });
  const m = await converged(t, name, 3);
  await writeKeys(m.ips, 'before', 50);

  // Overwrite a few keys with 50 KB values until etcd refuses: history (never compacted) fills the quota.
  const client = new Etcd3({ hosts: m.ips, dialTimeout: 3000 });
  const big = 'x'.repeat(50_000);
  const last: Record<string, number> = {};
  let refused = '';
  const fillStart = Date.now();
  for (let i = 0; i < 500 && !refused; i++) {
    try { await client.put(`fill/${i % 4}`).value(`${i}:${big}`); last[`fill/${i % 4}`] = i; } catch (e) { refused = (e as Error).message; }
  }
  console.log(`NOSPACE after ${Object.values(last).reduce((a, b) => Math.max(a, b), 0) + 1} writes (${((Date.now() - fillStart) / 1000).toFixed(1)} s): ${refused}`);
  expect(refused).toMatch(/database space exceeded/);

  const alarm = await eventually('Alarm condition in status', alarmOf, 60000, 1000);
  console.log(`status condition Alarm: ${alarm.message}`);
  expect(alarm.message).toMatch(/NOSPACE on full-/);
  // Past the grace for quorum loss: no restore, all members healthy and ready, reads still served.
  await sleep(quorumLossGraceMs + 15_000);
  const c = (await clusters(t).get(name))!;
  expect(c.status.phase).toBe('Running');
  expect(c.status.readyMembers).toBe(3);
  expect(c.status.lastRecovery).toBeUndefined();
  expect((c.status.lastOperations ?? []).filter((o) => o.type === 'recover')).toEqual([]);
  expect((await membership(t, name)).pods).toEqual(m.pods);
  expect(await missingKeys(m.ips, 'before', 50)).toEqual([]);

  // The runbook: compact to the current revision, defragment each member (the leader last), disarm.
  const rev = (await client.maintenance.status()).header.revision;
  await etcdctl(m.ips, ['compact', rev]);
  const leaderId = (await client.maintenance.status()).leader;
  const members = await Promise.all(m.ips.map(async (ip) => {
    const one = new Etcd3({ hosts: [ip], dialTimeout: 3000 });
    try { return { ip, id: (await one.maintenance.status()).header.member_id }; } finally { one.close(); }
  }));
  for (const x of members.sort((a, b) => Number(a.id === leaderId) - Number(b.id === leaderId))) {
    const t0 = Date.now();
    await etcdctl(x.ip, ['defrag'], { timeoutSec: 30 });
    const s = JSON.parse(await etcdctl(x.ip, ['endpoint', 'status', '-w', 'json']))[0].Status;
    console.log(`defragmented ${x.ip}${x.id === leaderId ? ' (leader)' : ''} in ${Date.now() - t0} ms: dbSize ${s.dbSize}, in use ${s.dbSizeInUse}`);
    expect(s.dbSize).toBeLessThan(1 << 20);
  }
  console.log(await etcdctl(m.ips, ['alarm', 'disarm']));
  await writeKeys(m.ips, 'after', 50);
  await eventually('Alarm condition gone', async () => !(await alarmOf()), 60000, 1000);

  expect(await missingKeys(m.ips, 'before', 50)).toEqual([]);
  expect(await missingKeys(m.ips, 'after', 50)).toEqual([]);
  const values = await client.getAll().prefix('fill/').strings();
  client.close();
  expect(Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Number(v.split(':')[0])]))).toEqual(last);
  expect((await clusters(t).get(name))?.status.lastRecovery).toBeUndefined();
}, 600000);
