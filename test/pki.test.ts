// The certificates activities/pki.ts issues, used by a real etcd: peer and client TLS with client
// certificate authentication, a client with our certificate reads and writes, one without is refused.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { etcdBinDir, pins } from '../local/toolchain.js';
import { freePort } from '../local/stack.js';
import { ManagedProcess, sleep } from '../local/process.js';
import { expiresAt, issue, memberHosts, newCA } from '../activities/pki.js';
import { memberPod } from '../activities/member-pod.js';
import { tlsModeOf } from '../activities/tls.js';
import { effectiveTls } from '../api/etcdcluster.js';
import { tlsAnnotation } from '../api/etcdcluster.js';

test('member hosts cover the member, the client Service and loopback', () => {
  expect(memberHosts({ namespace: 'ns', name: 'c' }, 'c-0001')).toEqual([
    'c-0001.c.ns.svc',
    'c-0001.c.ns.svc.cluster.local',
    'c-client.ns.svc',
    'c-client.ns.svc.cluster.local',
    'c-client',
    'localhost',
    '127.0.0.1',
  ]);
});

test('a real etcd serves TLS with our certificates and refuses clients without one', async () => {
  // Under the run's folder when there is one: CI's cleanup ends what it finds there.
  const dir = mkdtempSync(join(process.env.KEC_TEST_TMP ?? tmpdir(), 'kec-pki-'));
  const ca = await newCA('etcd-ca default/c', 365);
  const server = await issue(ca, {
    commonName: 'c-0000',
    hosts: memberHosts({ namespace: 'default', name: 'c' }, 'c-0000'),
    usages: ['server', 'client'], // etcd dials its peers with the same certificate
    days: 90,
  });
  const client = await issue(ca, { commonName: 'kube-etcd-controller', usages: ['client'], days: 90 });
  expect(expiresAt(client.cert).getTime()).toBeGreaterThan(Date.now() + 89 * 24 * 3600 * 1000);
  expect(expiresAt(client.cert).getTime()).toBeLessThanOrEqual(expiresAt(ca.cert).getTime());
  const files = { ca: ca.cert, cert: server.cert, key: server.key };
  for (const [name, pem] of Object.entries(files)) writeFileSync(join(dir, `${name}.pem`), pem, { mode: 0o600 });
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const etcd = new ManagedProcess({
    name: 'etcd',
    cmd: join(etcdBinDir(pins.ETCD35_VERSION), 'etcd'),
    args: [
      '--name=c-0000',
      `--data-dir=${join(dir, 'data')}`,
      `--listen-client-urls=https://127.0.0.1:${clientPort}`,
      `--advertise-client-urls=https://127.0.0.1:${clientPort}`,
      `--listen-peer-urls=https://127.0.0.1:${peerPort}`,
      `--initial-advertise-peer-urls=https://127.0.0.1:${peerPort}`,
      `--initial-cluster=c-0000=https://127.0.0.1:${peerPort}`,
      `--cert-file=${join(dir, 'cert.pem')}`,
      `--key-file=${join(dir, 'key.pem')}`,
      `--trusted-ca-file=${join(dir, 'ca.pem')}`,
      '--client-cert-auth',
      `--peer-cert-file=${join(dir, 'cert.pem')}`,
      `--peer-key-file=${join(dir, 'key.pem')}`,
      `--peer-trusted-ca-file=${join(dir, 'ca.pem')}`,
      '--peer-client-cert-auth',
      '--unsafe-no-fsync',
      '--log-level=warn',
    ],
    logFile: join(dir, 'etcd.log'),
  });
  const endpoint = `https://127.0.0.1:${clientPort}`;
  const credentials = {
    rootCertificate: Buffer.from(ca.cert),
    privateKey: Buffer.from(client.key),
    certChain: Buffer.from(client.cert),
  };
  const ours = new Etcd3({ hosts: [endpoint], credentials, dialTimeout: 2000 });
  const stranger = new Etcd3({ hosts: [endpoint], credentials: { rootCertificate: Buffer.from(ca.cert) } });
  try {
    let wrote = false;
    for (let i = 0; i < 100 && !wrote; i++) {
      wrote = await ours
        .put('k')
        .value('v')
        .exec()
        .then(
          () => true,
          () => false,
        );
      if (!wrote) await sleep(100);
    }
    expect(await ours.get('k').string()).toBe('v');
    await expect(stranger.get('k').string()).rejects.toThrow();
  } finally {
    ours.close();
    stranger.close();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

describe('TLS mode and member pods (issue 18)', () => {
  const ref = { namespace: 'ns', name: 'c', uid: 'u-1' };
  const spec = { size: 3, version: '3.5.17', repository: 'quay.io/coreos/etcd' };
  const pod = (tls: boolean) =>
    memberPod(ref, spec, 'c-0000', 'c-0000=http://c-0000.c.ns.svc:2380', 'new', undefined, undefined, tls);

  test('a spec without tls never switches a cluster; asking for the other mode of a running one is refused', () => {
    const existing = { phase: 'Running', clusterID: 'abc' };
    expect(tlsModeOf(spec, [], false, existing)).toEqual({ enabled: false });
    expect(tlsModeOf({ ...spec, tls: { enabled: true } }, [], false, existing)).toEqual({ enabled: true });
    // All members gone, the CA left: still TLS.
    expect(tlsModeOf(spec, [], true, existing)).toEqual({ enabled: true });
    expect(tlsModeOf(spec, [pod(true)], true, existing)).toEqual({ enabled: true });
    expect(tlsModeOf({ ...spec, tls: { enabled: false } }, [pod(true)], true, existing).refused).toMatch(
      /runs with TLS/,
    );
    expect(tlsModeOf({ ...spec, tls: { enabled: true } }, [pod(false)], false, existing)).toMatchObject({
      enabled: false,
      refused: expect.stringMatching(/runs without TLS/),
    });
  });

  test('TLS by default for a new cluster only: an existing one keeps its mode, the default never switches', () => {
    // New (no status yet): TLS, unless spec.tls says plain.
    expect(effectiveTls(spec, undefined)).toBe(true);
    expect(tlsModeOf(spec, [], false, undefined)).toEqual({ enabled: true });
    expect(tlsModeOf({ ...spec, tls: { enabled: false } }, [], false, undefined)).toEqual({ enabled: false });
    // The decision recorded in the first status holds across restarts, with no member or CA left.
    expect(tlsModeOf(spec, [], false, { phase: 'Creating', tls: { enabled: true } })).toEqual({ enabled: true });
    // A cluster from before the default (status without tls): plain, its members' mode wins, no switch.
    expect(tlsModeOf(spec, [], false, { phase: 'Running' })).toEqual({ enabled: false });
    expect(tlsModeOf(spec, [], false, { clusterID: 'abc' })).toEqual({ enabled: false });
    expect(tlsModeOf(spec, [pod(false)], false, undefined)).toEqual({ enabled: false });
    expect(tlsModeOf(spec, [pod(true)], true, { phase: 'Running' })).toEqual({ enabled: true });
  });

  test('a TLS member serves https with client certificate auth, its Secret mounted; a plain one is unchanged', () => {
    const cmd = pod(true).spec!.containers[0].command!;
    expect(cmd).toEqual(
      expect.arrayContaining([
        '--listen-client-urls=https://0.0.0.0:2379',
        '--advertise-client-urls=https://c-0000.c.ns.svc:2379',
        '--initial-advertise-peer-urls=https://c-0000.c.ns.svc:2380',
        '--initial-cluster=c-0000=https://c-0000.c.ns.svc:2380',
        '--client-cert-auth',
        '--peer-client-cert-auth',
        '--trusted-ca-file=/etc/etcd/tls/ca.crt',
      ]),
    );
    expect(pod(true).spec!.volumes).toContainEqual(
      expect.objectContaining({ secret: expect.objectContaining({ secretName: 'c-0000-tls' }) }),
    );
    const plain = pod(false).spec!.containers[0].command!;
    expect(plain.filter((a) => /https|cert|tls/.test(a))).toEqual([]);
    expect(pod(false).metadata!.annotations![tlsAnnotation]).toBeUndefined();
  });

  test('a switch: members with claims roll (switchTo, also to finish one half done); a bridge listens plain, dials TLS', () => {
    const claims = { ...spec, pod: { persistentVolumeClaimSpec: {} } };
    const on = (listen: boolean | 'bridge') =>
      memberPod(ref, claims, 'c-0000', 'c-0000=http://c-0000.c.ns.svc:2380', 'existing', undefined, undefined, listen);
    expect(tlsModeOf({ ...claims, tls: { enabled: true } }, [on(false), on(false)], false, undefined)).toEqual({
      enabled: false,
      switchTo: true,
    });
    expect(tlsModeOf({ ...claims, tls: { enabled: true } }, [on('bridge'), on(true)], true, undefined)).toEqual({
      enabled: true,
      switchTo: true,
    });
    expect(tlsModeOf({ ...claims, tls: { enabled: false } }, [on(true)], true, undefined)).toEqual({
      enabled: true,
      switchTo: false,
    });
    expect(tlsModeOf({ ...claims, tls: { enabled: false } }, [on('bridge')], true, undefined)).toEqual({
      enabled: false,
      switchTo: false,
    });
    expect(tlsModeOf({ ...claims, tls: { enabled: true } }, [on(true)], true, undefined)).toEqual({ enabled: true });
    // No spec.tls: never switched, whatever the members.
    expect(tlsModeOf(claims, [on('bridge'), on(true)], true, undefined)).toEqual({ enabled: true });
    const bridge = on('bridge');
    const cmd = bridge.spec!.containers[0].command!;
    expect(cmd).toEqual(
      expect.arrayContaining([
        '--listen-client-urls=http://0.0.0.0:2379',
        '--listen-peer-urls=http://0.0.0.0:2380',
        '--peer-cert-file=/etc/etcd/tls/tls.crt',
        '--peer-trusted-ca-file=/etc/etcd/tls/ca.crt',
      ]),
    );
    expect(cmd.filter((a) => /client-cert-auth|^--cert-file|https/.test(a))).toEqual([]);
    expect(bridge.metadata!.annotations![tlsAnnotation]).toBe('bridge');
  });
});
