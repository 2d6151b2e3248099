// Certificate rotation's pure parts (issue 18): when certificates are due, the plan's rotate-certs step, and the
// CA cross-certificate that lets a peer still trusting only the old CA accept the new certificates (etcd loads
// its trusted CA file at start only) — proven over real TLS handshakes in both directions.
import { once } from 'node:events';
import { connect, createServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { crossSign, issue, newCA, type CertPair } from '../activities/pki.js';
import { pemJoin, renewalDue } from '../activities/tls.js';
import { decide, type Memory } from '../workflows/plan.js';
import { operationId } from '../api/names.js';
import { memberView, observation, podView } from './support/observation.js';

const day = 24 * 60 * 60 * 1000;
const life = (from: number, days: number) => ({ notBefore: new Date(from), notAfter: new Date(from + days * day) });

test('due when less than a third of the lifetime remains: the CA first (it renews everything), else the certificates', () => {
  const now = Date.parse('2027-01-01T00:00:00Z');
  const ca = life(now - 100 * day, 3650);
  const fresh = { secret: 'a-tls', ...life(now - 10 * day, 365) };
  const old = { secret: 'b-tls', ...life(now - 250 * day, 365) };
  expect(renewalDue(now, ca, [fresh])).toBeUndefined();
  expect(renewalDue(now, ca, [fresh, old])).toMatchObject({ ca: false, reason: expect.stringContaining('b-tls') });
  expect(renewalDue(now, life(now - 2500 * day, 3650), [fresh])).toMatchObject({ ca: true });
});

test('the plan runs rotate-certs-<n> when the observation says so, only with the patch', () => {
  const created: Memory = { created: true, unhealthySince: {} };
  const o = observation({
    spec: { size: 3, version: '3.5.33', repository: 'quay.io/coreos/etcd', tls: { enabled: true } },
    pods: [0, 1, 2].map((i) => podView(i)),
    etcd: { members: [0, 1, 2].map((i) => memberView(i)) },
    tls: { enabled: true, rotations: 2, renew: { ca: true, reason: 'requested (ca-x)', request: 'ca-x' } },
  });
  expect(decide(o, created, 0)).toMatchObject({ kind: 'idle' });
  const d = decide(o, created, 0, { certRotation: true });
  expect(d).toEqual({
    kind: 'run',
    op: { type: 'rotate-certs', n: 3, ca: true, reason: 'requested (ca-x)', request: 'ca-x' },
  });
  if (d.kind === 'run') expect(operationId('default', 'c', d.op)).toBe('default/c/rotate-certs-3');
});

/** A handshake between a server and a client, each with its certificate chain and trusted CAs (mutual TLS): both
 *  sides must accept the other's chain (under TLS 1.3 the client is done before the server has checked it). */
async function handshake(server: { cert: string; key: string; ca: string }, client: typeof server): Promise<void> {
  const srv = createServer({ ...server, requestCert: true, rejectUnauthorized: true }, (s) => s.end());
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  try {
    const accepted = Promise.race([
      once(srv, 'secureConnection'),
      once(srv, 'tlsClientError').then(([e]) => Promise.reject(e as Error)),
    ]);
    const port = (srv.address() as AddressInfo).port;
    const sock = connect({ ...client, host: '127.0.0.1', port, servername: 'localhost' });
    sock.on('error', () => undefined);
    await Promise.race([accepted, once(sock, 'error').then(([e]) => Promise.reject(e as Error))]);
    sock.destroy();
  } finally {
    srv.close();
  }
}

test('CA rotation: a new certificate, served with the cross-certificate, is accepted by peers trusting the old CA only, the new only, or both', async () => {
  const oldCa = await newCA('etcd-ca default/c', 3650);
  const newCa = await newCA('etcd-ca default/c #1', 3650);
  const cross = await crossSign(oldCa, newCa);
  const leaf = (ca: CertPair) =>
    issue(ca, { commonName: 'm', hosts: ['localhost'], usages: ['server', 'client'], days: 365 });
  const [oldLeaf, newLeaf] = [await leaf(oldCa), await leaf(newCa)];
  const renewed = { cert: pemJoin(newLeaf.cert, cross), key: newLeaf.key };
  // A member not restarted yet (old certificate, trusts the old CA only) and a renewed one, both ways.
  await handshake({ ...oldLeaf, ca: oldCa.cert }, { ...renewed, ca: oldCa.cert });
  await handshake({ ...renewed, ca: oldCa.cert }, { ...oldLeaf, ca: oldCa.cert });
  // After the roll, a member (re)started with the new CA only, with one still holding the old CA in memory.
  await handshake({ ...renewed, ca: newCa.cert }, { ...renewed, ca: oldCa.cert });
  await handshake({ ...renewed, ca: oldCa.cert }, { ...renewed, ca: newCa.cert });
  // During the roll the Secrets trust both.
  await handshake(
    { ...oldLeaf, ca: pemJoin(newCa.cert, oldCa.cert) },
    { ...renewed, ca: pemJoin(newCa.cert, oldCa.cert) },
  );
  // The old certificate is refused where only the new CA is trusted: the old CA is really dropped.
  await expect(handshake({ ...renewed, ca: newCa.cert }, { ...oldLeaf, ca: newCa.cert })).rejects.toThrow();
});
