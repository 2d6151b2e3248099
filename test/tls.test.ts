// A TLS cluster (spec.tls, issue 18) on the real stack, under a writer that uses the users' client certificate:
// create, replace a deleted member, resize; a client without the certificate is refused; the backup tool takes
// a snapshot over TLS for the controller's token only and never dials endpoints a request names. A running plain
// cluster switched to TLS under a writer (a rolling restart in place, one member at a time). etcd auth (spec.auth)
// turned on and off for the running TLS cluster.
import { Etcd3 } from 'etcd3';
import {
  clusters,
  clusterWriter,
  ContinuousWriter,
  converged,
  convergedNow,
  convergedWithout,
  etcdClient,
  membership,
  stackWithControllerPerFile,
  runCli,
} from './support/controller.js';
import { eventually, type TestStack } from './support/stack.js';
import { apiVersion, backupToolSelector, kind, memberSelector, tlsAnnotation } from '../api/etcdcluster.js';
import {
  backupTokenSecretName,
  caSecretName,
  clientTlsSecretName,
  controllerTlsSecretName,
  memberTlsSecretName,
  rootCredentialsSecretName,
  tlsServerName,
  userCredentialsSecretName,
} from '../api/names.js';
import { readCredentials, readTlsSecret, type TlsCredentials } from '../activities/etcd-client.js';
import { sameSerial, servedCertificate } from '../activities/tls.js';
import { expiresAt, newCA, serialOf } from '../activities/pki.js';
import { CustomObjectsApi } from '@kubernetes/client-node';

let t: TestStack;
const name = 'secure';

// cert-manager runs in this file's stack only (spec.tls.issuerRef's case, at the end).
stackWithControllerPerFile((s) => ({ t } = s), { stack: { certManager: true } });

/** A client with the CA but no certificate, and one in plain HTTP, are both refused by these https members. */
async function expectRefused(ips: string[], caPem: string, serverName: string) {
  const stranger = new Etcd3({
    hosts: ips,
    dialTimeout: 2000,
    credentials: { rootCertificate: Buffer.from(caPem) },
    grpcOptions: { 'grpc.ssl_target_name_override': serverName },
  });
  const plain = new Etcd3({ hosts: ips.map((u) => u.replace('https://', 'http://')), dialTimeout: 2000 });
  try {
    await expect(stranger.get('k').string()).rejects.toThrow();
    await expect(plain.get('k').string()).rejects.toThrow();
  } finally {
    stranger.close();
    plain.close();
  }
}

test('a TLS cluster (the default: no spec.tls): created, a deleted member replaced, resized 3 → 4 under a writer with the client certificate; 0 lost', async () => {
  // Without spec.tls (createFromSpec would say plain): a new cluster serves TLS, recorded in status.tls.enabled.
  await clusters(t).create({
    apiVersion,
    kind,
    metadata: { name },
    spec: { size: 3, backup: { maxSnapshot: 2, snapshotIntervalInSecond: 3600, volumeSizeInMB: 64 } },
  });
  const first = await converged(t, name, 3);
  expect((await clusters(t).get(name))?.status.tls?.enabled).toBe(true);
  expect(first.ips.every((u) => u.startsWith('https://'))).toBe(true);
  const pod = await t.core.readNamespacedPod({ name: first.pods[0], namespace: 'default' });
  expect(pod.metadata?.annotations?.[tlsAnnotation]).toBe('true');
  expect(pod.spec?.containers[0].command).toContain('--client-cert-auth');
  const c = await clusters(t).get(name);
  expect(c?.status.clientURLs).toEqual([`https://${name}-client.default.svc:2379`]);
  expect(Date.parse((c?.status.tls as { notAfter: string }).notAfter)).toBeGreaterThan(Date.now());
  const ca = await t.core.readNamespacedSecret({ name: caSecretName(name), namespace: 'default' });

  const writer = clusterWriter(t, name);
  try {
    // Without a client certificate (the CA only), and in plain HTTP: refused.
    const { ca: caPem } = await readTlsSecret(t.core, { namespace: 'default', name }, clientTlsSecretName(name));
    await expectRefused(first.ips, caPem, tlsServerName({ namespace: 'default', name }));

    const victim = first.pods[0];
    await t.core.deleteNamespacedPod({ name: victim, namespace: 'default' });
    const replaced = await convergedWithout(t, name, 3, victim, 'replacement', 150000);
    expect(replaced.pods.filter((p) => !first.pods.includes(p))).toHaveLength(1);
    // The CA was never reissued.
    const caKept = await t.core.readNamespacedSecret({ name: caSecretName(name), namespace: 'default' });
    expect(caKept.data?.['ca.crt']).toBe(ca.data?.['ca.crt']);

    // Rotation of the CA and every certificate on demand (CLI), under the writer: no member restarts (etcd reads
    // its certificate files on each handshake), no request fails, the members serve certificates of the new CA.
    const ref = { namespace: 'default', name };
    const oldCreds = await readTlsSecret(t.core, ref, controllerTlsSecretName(name));
    const served = (ips: string[], creds: TlsCredentials) =>
      Promise.all(ips.map((u) => servedCertificate(new URL(u).hostname, creds)));
    const before = await served(replaced.ips, oldCreds);
    const podsBefore = await memberPodUids(name);
    const failedBefore = writer.failed + writer.errors;
    const started = Date.now();
    const out = await cli('rotate-certs', name, '--ca');
    expect(out).toMatchObject({ code: 0 });
    expect(out.out).toContain(`default/${name}/rotate-certs-1`);
    const rotatedStatus = await eventually(
      'rotation 1 in status',
      async () => {
        const c = await clusters(t).get(name);
        return (c?.status.tls as { rotations?: number } | undefined)?.rotations === 1 ? c : undefined;
      },
      180000,
    );
    const seconds = (Date.now() - started) / 1000;
    const failedDuring = writer.failed + writer.errors - failedBefore;
    console.log(
      `tls rotation of the CA + 3 members: ${seconds.toFixed(1)} s, failed requests during it ${failedDuring}`,
    );
    expect(failedDuring).toBe(0);
    expect(await memberPodUids(name)).toEqual(podsBefore); // nobody restarted or replaced

    // The CA Secret holds a new CA and no longer the old one; every certificate Secret trusts the new CA only.
    const caNew = await t.core.readNamespacedSecret({ name: caSecretName(name), namespace: 'default' });
    expect(caNew.data?.['ca.crt']).not.toBe(ca.data?.['ca.crt']);
    expect(caNew.data?.['previous.crt']).toBeUndefined();
    const newCa = Buffer.from(caNew.data!['ca.crt'], 'base64').toString('utf8');
    const certSecrets = [
      ...replaced.pods.map(memberTlsSecretName),
      clientTlsSecretName(name),
      controllerTlsSecretName(name),
    ];
    const newCreds = await readTlsSecret(t.core, ref, controllerTlsSecretName(name));
    expect(newCreds.ca).toBe(newCa);
    // Served over a handshake that trusts the new CA only: new serials, the new CA's, what the Secrets hold.
    const after = await served(replaced.ips, newCreds);
    const memberSecrets = await Promise.all(
      replaced.pods.map((p) => readTlsSecret(t.core, ref, memberTlsSecretName(p))),
    );
    after.forEach((c, i) => {
      expect(c.serial).not.toBe(before[i].serial);
      expect(c.issuer).toBe(`etcd-ca default/${name} #1`);
      expect(sameSerial(c.serial, serialOf(memberSecrets[i].cert))).toBe(true);
      expect(memberSecrets[i].ca).toBe(newCa);
    });
    // Status shows the new expiry of each certificate and of the CA.
    const tlsStatus = rotatedStatus!.status.tls as {
      caNotAfter: string;
      certificates: { secret: string; notAfter: string }[];
    };
    expect(tlsStatus.caNotAfter).toBe(expiresAt(newCa).toISOString());
    for (const s of certSecrets) {
      const cert = (await readTlsSecret(t.core, ref, s)).cert;
      expect(tlsStatus.certificates).toContainEqual({ secret: s, notAfter: expiresAt(cert).toISOString() });
    }
    // A user with the new client Secret only (new CA, new certificate) reads and writes.
    const fresh = (await membership(t, name)).ips;
    const user = etcdClient(fresh);
    try {
      await user.put('rotated').value('yes');
      expect(await user.get('rotated').string()).toBe('yes');
    } finally {
      user.close();
    }

    await clusters(t).patchSpec(name, { size: 4 });
    const four = await converged(t, name, 4);
    expect(four.ips.every((u) => u.startsWith('https://'))).toBe(true);
    expect((await clusters(t).get(name))?.spec.tls).toBeUndefined(); // still the default, still TLS
    // The rotated CA was not reissued by the resize.
    const caAfter = await t.core.readNamespacedSecret({ name: caSecretName(name), namespace: 'default' });
    expect(caAfter.data?.['ca.crt']).toBe(caNew.data?.['ca.crt']);
  } finally {
    await writer.stop();
  }
  const m = await membership(t, name);
  const lost = await writer.lost(m.ips);
  console.log(
    `tls: acked ${writer.acked.length}, failed ${writer.failed}, client errors ${writer.errors}, lost ${lost.length}`,
  );
  expect(writer.acked.length).toBeGreaterThan(0);
  expect(lost).toEqual([]);
}, 420_000);

/** Member pods by name → uid and restart count: equal before and after means none was recreated or restarted. */
async function memberPodUids(cluster: string) {
  const pods = await t.core.listNamespacedPod({ namespace: 'default', labelSelector: memberSelector(cluster) });
  return Object.fromEntries(
    pods.items.map((p) => [p.metadata!.name!, `${p.metadata!.uid}/${p.status?.containerStatuses?.[0]?.restartCount}`]),
  );
}

const cli = (...args: string[]) => runCli(t, ...args);

test('the backup tool: 401 without the token (snapshots, listings, downloads), endpoints= refused, a snapshot over TLS for the controller', async () => {
  const tool = await eventually(
    'backup tool ready',
    async () => {
      const pods = await t.core.listNamespacedPod({ namespace: 'default', labelSelector: backupToolSelector(name) });
      const p = pods.items.find((x) => x.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      return p ? `http://${p.status!.podIP}:19999` : undefined;
    },
    60000,
  );
  const secret = await t.core.readNamespacedSecret({ name: backupTokenSecretName(name), namespace: 'default' });
  const token = Buffer.from(secret.data!.token, 'base64').toString('utf8');
  const auth = { authorization: `Bearer ${token}` };
  const m = await membership(t, name);
  const post = (q: string, headers: Record<string, string> = {}) =>
    fetch(`${tool}/v1/backupnow?${q}`, { method: 'POST', headers });
  expect((await post(`members=${m.pods[0]}`)).status).toBe(401);
  expect((await post(`members=${m.pods[0]}`, { authorization: 'Bearer wrong' })).status).toBe(401);
  expect((await post(`endpoints=http://127.0.0.1:2379`, auth)).status).toBe(400);
  expect((await post(`members=someone-else-0000`, auth)).status).toBe(400);
  const ok = await post(`members=${m.pods.join(',')}&reason=test`, auth);
  const rec = (await ok.json()) as { revision?: number; error?: string };
  expect({ status: ok.status, error: rec.error }).toEqual({ status: 200, error: undefined });
  expect(rec.revision).toBeGreaterThan(0);
  // Listings and downloads (full snapshots) need the token too; only /healthz answers anyone.
  expect((await fetch(`${tool}/v1/backups`)).status).toBe(401);
  expect((await fetch(`${tool}/v1/backups`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
  const list = (await (await fetch(`${tool}/v1/backups`, { headers: auth })).json()) as { name: string }[];
  expect(list.length).toBeGreaterThan(0);
  const one = `${tool}/v1/backups/${list[0].name}`;
  expect((await fetch(one)).status).toBe(401);
  const download = await fetch(one, { headers: auth });
  expect(download.status).toBe(200);
  expect((await download.arrayBuffer()).byteLength).toBeGreaterThan(0);
  expect((await fetch(`${tool}/healthz`)).status).toBe(200);
}, 120_000);

test('etcd auth turned on for the running TLS cluster under a writer as the app user: refused without credentials, users only in their prefix, a resize and a backup as root; 0 lost', async () => {
  const prefix = `${name}-auth`; // the writer's keys: <prefix>/<n>
  const users = [
    { name: 'app', keyPrefix: `${prefix}/` },
    { name: 'ro', keyPrefix: `${prefix}/`, readOnly: true },
  ];
  const writer = new ContinuousWriter(async () => (await membership(t, name).catch(() => ({ ips: [] }))).ips, prefix);
  writer.start();
  try {
    await eventually('writer acked a few writes', async () => writer.acked.length > 5, 30000);
    await clusters(t).patchSpec(name, { auth: { enabled: true, users } });
    const authOf = async () => (await clusters(t).get(name))?.status.auth as { enabled: boolean; users: string[] };
    expect(await eventually('auth on in status', async () => (await authOf())?.enabled && authOf(), 120000)).toEqual({
      enabled: true,
      users: ['app', 'ro'],
    });
    const app = (await readCredentials(t.core, 'default', userCredentialsSecretName(name, 'app')))!;
    const ro = (await readCredentials(t.core, 'default', userCredentialsSecretName(name, 'ro')))!;
    expect(app.username).toBe('app');
    expect(app.password.length).toBeGreaterThanOrEqual(24);
    writer.auth = app;

    const ips = (await membership(t, name)).ips;
    const as = async (who: typeof app | undefined, fn: (c: Etcd3) => Promise<unknown>) => {
      const c = etcdClient(ips, 3000, who);
      try {
        return await fn(c);
      } finally {
        c.close();
      }
    };
    // The client certificate alone (its CN names no etcd user): refused.
    await expect(as(undefined, (c) => c.get(`${prefix}/0`).string())).rejects.toThrow();
    await expect(as(undefined, (c) => c.put(`${prefix}/x`).value('1').exec())).rejects.toThrow();
    // app reads and writes in its prefix, nowhere else; ro only reads there.
    await as(app, (c) => c.put(`${prefix}/by-app`).value('yes').exec());
    expect(await as(app, (c) => c.get(`${prefix}/by-app`).string())).toBe('yes');
    await expect(as(app, (c) => c.put('elsewhere').value('no').exec())).rejects.toThrow(/permission denied/);
    await expect(as(app, (c) => c.get('rotated').string())).rejects.toThrow(/permission denied/);
    expect(await as(ro, (c) => c.get(`${prefix}/by-app`).string())).toBe('yes');
    await expect(as(ro, (c) => c.put(`${prefix}/by-ro`).value('no').exec())).rejects.toThrow(/permission denied/);

    // The controller's own work as root: an on-demand backup through the tool (snapshot, key sample), and a resize
    // (member removal, health gates, leadership) — the writer keeps writing as app.
    const secret = await t.core.readNamespacedSecret({ name: backupTokenSecretName(name), namespace: 'default' });
    const token = Buffer.from(secret.data!.token, 'base64').toString('utf8');
    const tool = await eventually(
      'backup tool ready with the root Secret mounted',
      async () => {
        const pods = await t.core.listNamespacedPod({ namespace: 'default', labelSelector: backupToolSelector(name) });
        const p = pods.items.find(
          (x) =>
            !x.metadata?.deletionTimestamp &&
            x.spec?.volumes?.some((v) => v.secret?.secretName === rootCredentialsSecretName(name)) &&
            x.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
        );
        return p ? `http://${p.status!.podIP}:19999` : undefined;
      },
      90000,
    );
    const m = await membership(t, name);
    const backup = await eventually(
      'a backup as root',
      async () => {
        const res = await fetch(`${tool}/v1/backupnow?members=${m.pods.join(',')}&reason=auth`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}` },
        });
        const body = (await res.json()) as { revision: number; error?: string };
        if (!res.ok) console.log(`backup as root not yet: ${res.status} ${body.error}`);
        return res.ok ? body : undefined;
      },
      60000,
    );
    expect(backup.revision).toBeGreaterThan(0);
    await clusters(t).patchSpec(name, { size: 3 });
    expect((await converged(t, name, 3)).members).toHaveLength(3);

    // Auth off, ro dropped from the spec: ro and its role deleted (an Event says so), its Secret gone; the certificate
    // alone reads again; app is kept.
    await clusters(t).patchSpec(name, { auth: { enabled: false, users: [users[0]] } });
    expect(
      await eventually('auth off in status', async () => (await authOf())?.enabled === false && authOf(), 120000),
    ).toEqual({
      enabled: false,
      users: ['app'],
    });
    // The workflow records the Event once the auth step returns, just after that step published status.auth.
    const said = await eventually(
      'AuthDisabled Event',
      async () => {
        const events = await t.core.listNamespacedEvent({
          namespace: 'default',
          fieldSelector: `involvedObject.name=${name}`,
        });
        const all = events.items.map((e) => `${e.reason}: ${e.message}`);
        return all.some((e) => e.startsWith('AuthDisabled:')) && all;
      },
      30000,
    );
    expect(said).toContain(
      'AuthChanged: user ro deleted (removed from spec.auth.users; its Secret is kept, its password no longer works)',
    );
    expect(said.filter((e) => /^Auth(Enabled|Disabled):/.test(e))).toHaveLength(2);
    expect(said.join('\n')).not.toContain(app.password);
    const fresh = (await membership(t, name)).ips;
    const plainUser = etcdClient(fresh);
    try {
      expect(await plainUser.get(`${prefix}/by-app`).string()).toBe('yes');
      expect((await plainUser.getUsers()).map((u) => u.name).sort()).toEqual(['app', 'root']);
    } finally {
      plainUser.close();
    }
    writer.auth = undefined;
  } finally {
    await writer.stop();
  }
  const lost = await writer.lost((await membership(t, name)).ips);
  console.log(
    `auth: acked ${writer.acked.length}, failed ${writer.failed}, client errors ${writer.errors}, lost ${lost.length}`,
  );
  expect(writer.acked.length).toBeGreaterThan(0);
  expect(lost).toEqual([]);
}, 360_000);

test('a running plain cluster switched to TLS and back under writers, one member at a time: 0 lost', async () => {
  const flip = 'flip';
  const claims = { persistentVolumeClaimSpec: { resources: { requests: { storage: '64Mi' } } } };
  await clusters(t).createFromSpec(flip, { size: 3, tls: { enabled: false }, pod: claims });
  const before = await converged(t, flip, 3);
  expect(before.ips.every((u) => u.startsWith('http://'))).toBe(true);

  /** spec.tls.enabled set to `to` under a writer (keys under `prefix`): the switch's seconds and the writer. */
  const switchTo = async (to: boolean, prefix: string) => {
    const writer = new ContinuousWriter(async () => (await membership(t, flip).catch(() => ({ ips: [] }))).ips, prefix);
    writer.start();
    const started = Date.now();
    try {
      await eventually('writer acked a few writes', async () => writer.acked.length > 5, 30000);
      await clusters(t).patchSpec(flip, { tls: { enabled: to } });
      await eventually(
        `switched to ${to ? 'TLS' : 'plain'}`,
        async () => {
          const c = await clusters(t).get(flip);
          const ops = (c?.status.lastOperations ?? []) as { type: string; result: string; message: string }[];
          const op = ops.find((o) => o.type === 'switch-tls' && o.message.includes(to ? '→ TLS' : '→ plain'));
          if (op && op.result !== 'Succeeded') throw new Error(`switch failed: ${op.message}`);
          return op && (await convergedNow(t, flip, 3));
        },
        240000,
        1000,
      );
      return { writer, seconds: (Date.now() - started) / 1000 };
    } finally {
      await writer.stop();
    }
  };
  const report = async (what: string, r: { writer: ContinuousWriter; seconds: number }, ips: string[]) => {
    const lost = await r.writer.lost(ips);
    const w = r.writer;
    console.log(
      `tls switch ${what} (3 members): ${r.seconds.toFixed(1)} s; acked ${w.acked.length}, failed ${w.failed}, ` +
        `client errors ${w.errors}, lost ${lost.length}`,
    );
    expect(w.acked.length).toBeGreaterThan(0);
    expect(lost).toEqual([]);
  };
  const switchEvents = async () =>
    (
      await t.core.listNamespacedEvent({ namespace: 'default', fieldSelector: `involvedObject.name=${flip}` })
    ).items.map((e) => e.reason);

  const on = await switchTo(true, 'flip-on');
  const tls = await membership(t, flip);
  expect(tls.pods).toEqual(before.pods); // restarted in place: same members, same data
  expect(tls.ips.every((u) => u.startsWith('https://'))).toBe(true);
  // Each member twice: bridge, then TLS.
  expect((await switchEvents()).filter((r) => r === 'MemberTLSSwitching')).toHaveLength(6);
  // Without the client certificate, and in plain HTTP: refused; with it, every acked write is there.
  const { ca } = await readTlsSecret(t.core, { namespace: 'default', name: flip }, clientTlsSecretName(flip));
  await expectRefused(tls.ips, ca, tlsServerName({ namespace: 'default', name: flip }));
  await report('plain → TLS', on, tls.ips);

  const off = await switchTo(false, 'flip-off');
  const plain = await membership(t, flip);
  expect(plain.pods).toEqual(before.pods);
  expect(plain.ips.every((u) => u.startsWith('http://'))).toBe(true);
  expect((await switchEvents()).filter((r) => r === 'TLSSwitched')).toHaveLength(2);
  // The status drops its TLS record (expiry dates, rotations): no certificate metric for a plain cluster.
  await eventually('status without tls', async () => (await clusters(t).get(flip))?.status.tls === undefined, 30000);
  // A plain client reads what both writers wrote.
  await report('TLS → plain', off, plain.ips);
  expect(await on.writer.lost(plain.ips)).toEqual([]);
}, 600_000);

test('spec.tls.issuerRef: refused while the Issuer is missing, then certificates from cert-manager (CA Issuer); the client certificate reads and writes, none is refused; 0 lost', async () => {
  const cm = 'issued';
  const ref = { namespace: 'default', name: cm };
  const custom = t.kc.makeApiClient(CustomObjectsApi);
  const issuers = { group: 'cert-manager.io', version: 'v1', namespace: 'default', plural: 'issuers' };
  await clusters(t).createFromSpec(cm, { size: 3, tls: { enabled: true, issuerRef: { name: 'etcd-issuer' } } });
  // No Issuer yet: refused, said in a condition and an Event, nothing created.
  const refused = await eventually('CertManagerNotReady condition', async () => {
    const c = await clusters(t).get(cm);
    return (c?.status.conditions as { type: string; message: string }[] | undefined)?.find(
      (x) => x.type === 'CertManagerNotReady',
    );
  });
  expect(refused.message).toContain('Issuer etcd-issuer in namespace default does not exist');
  const events = await t.core.listNamespacedEvent({ namespace: 'default', fieldSelector: `involvedObject.name=${cm}` });
  expect(events.items.some((e) => e.reason === 'CertManagerNotReady')).toBe(true);
  expect(await memberPodUids(cm)).toEqual({});

  // The Issuer: cert-manager's CA issuer over a CA Secret of ours. The cluster comes up at the next attempt.
  const issuerCa = await newCA('etcd test issuer', 30);
  await t.core.createNamespacedSecret({
    namespace: 'default',
    body: {
      metadata: { name: 'etcd-issuer-ca' },
      type: 'kubernetes.io/tls',
      stringData: { 'tls.crt': issuerCa.cert, 'tls.key': issuerCa.key },
    },
  });
  await custom.createNamespacedCustomObject({
    ...issuers,
    body: {
      apiVersion: 'cert-manager.io/v1',
      kind: 'Issuer',
      metadata: { name: 'etcd-issuer' },
      spec: { ca: { secretName: 'etcd-issuer-ca' } },
    },
  });
  const up = await converged(t, cm, 3);
  expect(up.ips.every((u) => u.startsWith('https://'))).toBe(true);
  // No CA of the controller's: every certificate Secret is cert-manager's, from its Certificate, of the Issuer's CA.
  await expect(t.core.readNamespacedSecret({ name: caSecretName(cm), namespace: 'default' })).rejects.toThrow();
  const secrets = [...up.pods.map(memberTlsSecretName), clientTlsSecretName(cm), controllerTlsSecretName(cm)];
  for (const s of secrets) {
    const secret = await t.core.readNamespacedSecret({ name: s, namespace: 'default' });
    expect(secret.metadata?.annotations?.['cert-manager.io/issuer-name']).toBe('etcd-issuer');
    expect((await readTlsSecret(t.core, ref, s)).ca.trim()).toBe(issuerCa.cert.trim());
  }
  const controllerCreds = await readTlsSecret(t.core, ref, controllerTlsSecretName(cm));
  for (const u of up.ips)
    expect((await servedCertificate(new URL(u).hostname, controllerCreds)).issuer).toBe('etcd test issuer');
  const c = await clusters(t).get(cm);
  expect((c?.status.conditions as { type: string }[]).some((x) => x.type === 'CertManagerNotReady')).toBe(false);
  const certs = (c?.status.tls as { certificates: { secret: string }[] }).certificates.map((x) => x.secret);
  expect(certs.sort()).toEqual([...secrets].sort());

  const writer = clusterWriter(t, cm);
  try {
    await eventually('writes acked', async () => writer.acked.length >= 20);
    await expectRefused(up.ips, issuerCa.cert, tlsServerName(ref));
  } finally {
    await writer.stop();
  }
  const lost = await writer.lost((await membership(t, cm)).ips);
  console.log(
    `cert-manager tls: acked ${writer.acked.length}, failed ${writer.failed}, client errors ${writer.errors}, lost ${lost.length}`,
  );
  expect(writer.acked.length).toBeGreaterThan(0);
  expect(lost).toEqual([]);
}, 240_000);
