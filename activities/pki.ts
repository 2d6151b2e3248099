// Certificates for etcd's peer and client TLS (issue 18): a per-cluster CA, a serving + peer certificate per
// member, client certificates for the controller and users. Built with @peculiar/x509 over Node's WebCrypto;
// ECDSA P-256 keys (Go's crypto/tls, hence etcd, reads PKCS#8 "PRIVATE KEY" PEM).
import { webcrypto } from 'node:crypto';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import type * as X509 from '@peculiar/x509';
import { clientServiceName, memberHost } from '../api/names.js';
import type { ClusterRef } from '../api/etcdcluster.js';

let loaded: typeof X509 | undefined;
/** @peculiar/x509 is loaded at the first certificate read or made (issue 17): ~3 MB of RSS a controller without TLS
 *  clusters does not carry. reflect-metadata first: the library's dependency injection needs it. */
function x509Lib(): typeof X509 {
  if (!loaded) {
    const require = createRequire(import.meta.url);
    require('reflect-metadata');
    loaded = require('@peculiar/x509') as typeof X509;
    loaded.cryptoProvider.set(webcrypto as unknown as Crypto);
  }
  return loaded;
}

const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const day = 24 * 60 * 60 * 1000;

/** A certificate and its private key, both PEM. */
export interface CertPair {
  cert: string;
  key: string;
}

export interface CertRequest {
  commonName: string;
  /** Subject O (Kubernetes reads it as the client's group, e.g. system:nodes). */
  organization?: string;
  /** DNS names and IP addresses the certificate is valid for (servers, peers). */
  hosts?: string[];
  usages: ('server' | 'client')[];
  days: number;
}

async function keyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function pemKey(key: CryptoKey): Promise<string> {
  return x509Lib().PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

const serial = () =>
  Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)).map((b, i) => (i ? b : b & 0x7f))).toString('hex');

/** A self-signed CA; `days` from now (backdated an hour for clocks slightly behind). */
export async function newCA(commonName: string, days: number): Promise<CertPair> {
  const x509 = x509Lib();
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${commonName}`,
    notBefore: new Date(Date.now() - 60 * 60 * 1000),
    notAfter: new Date(Date.now() + days * day),
    signingAlgorithm: alg,
    keys,
    extensions: [
      // No path length limit: after a CA rotation, its successor (cross-certified) sits between it and the leaves.
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: cert.toString('pem'), key: await pemKey(keys.privateKey) };
}

/** A CA's private key, ready to sign. */
const signingKeyOf = (ca: CertPair) =>
  webcrypto.subtle.importKey(
    'pkcs8',
    x509Lib().PemConverter.decodeFirst(ca.key),
    { name: alg.name, namedCurve: alg.namedCurve },
    false,
    ['sign'],
  );

/** A leaf certificate signed by `ca`. */
export async function issue(ca: CertPair, req: CertRequest): Promise<CertPair> {
  const x509 = x509Lib();
  const caCert = new x509.X509Certificate(ca.cert);
  const caKey = await signingKeyOf(ca);
  const keys = await keyPair();
  const hosts = req.hosts ?? [];
  const ekus = [
    ...(req.usages.includes('server') ? [x509.ExtendedKeyUsage.serverAuth] : []),
    ...(req.usages.includes('client') ? [x509.ExtendedKeyUsage.clientAuth] : []),
  ];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: [{ CN: [req.commonName] }, ...(req.organization ? [{ O: [req.organization] }] : [])],
    issuer: caCert.subject,
    notBefore: new Date(Date.now() - 60 * 60 * 1000),
    notAfter: new Date(Math.min(Date.now() + req.days * day, caCert.notAfter.getTime())),
    signingAlgorithm: alg,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension(ekus),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
      ...(hosts.length
        ? [
            new x509.SubjectAlternativeNameExtension(
              hosts.map((h) => (isIP(h) ? { type: 'ip' as const, value: h } : { type: 'dns' as const, value: h })),
            ),
          ]
        : []),
    ],
  });
  return { cert: cert.toString('pem'), key: await pemKey(keys.privateKey) };
}

/** A PEM certificate parsed; of a chain, its first. */
const certificateOf = (certPem: string) => new (x509Lib().X509Certificate)(certPem);
/** When a certificate stops being valid (for status, metrics and renewal); of a chain, its first (the leaf). */
export const expiresAt = (certPem: string): Date => certificateOf(certPem).notAfter;
/** A CA certificate's path length limit (undefined: none). CAs made before rotation existed have 0: a
 *  cross-certified successor cannot be chained under them. */
export const pathLengthOf = (certPem: string): number | undefined =>
  certificateOf(certPem).getExtension(x509Lib().BasicConstraintsExtension)?.pathLength;
/** A certificate's serial number (hex), of a chain its first. */
export const serialOf = (certPem: string): string => certificateOf(certPem).serialNumber;
/** A certificate's validity, of a chain its first. */
export function lifetimeOf(certPem: string): { notBefore: Date; notAfter: Date } {
  const c = certificateOf(certPem);
  return { notBefore: c.notBefore, notAfter: c.notAfter };
}

/**
 * CA rotation (issue 18): `next` (its subject and key) certified by `prev`. Leaves signed by `next` are served
 * with it as intermediate, so a member that still trusts only `prev` accepts them: etcd loads its trusted CA
 * file at start only (client/pkg/transport/listener.go ServerConfig), while it reloads its own certificate and
 * key on every handshake.
 */
export async function crossSign(prev: CertPair, next: CertPair): Promise<string> {
  const x509 = x509Lib();
  const prevCert = new x509.X509Certificate(prev.cert);
  const nextCert = new x509.X509Certificate(next.cert);
  const signingKey = await signingKeyOf(prev);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: nextCert.subject,
    issuer: prevCert.subject,
    notBefore: nextCert.notBefore,
    notAfter: new Date(Math.min(nextCert.notAfter.getTime(), prevCert.notAfter.getTime())),
    signingAlgorithm: alg,
    publicKey: nextCert.publicKey,
    signingKey,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(nextCert.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(prevCert),
    ],
  });
  return cert.toString('pem');
}

/** The names a member's certificate serves: its own DNS name (peers and clients dial it) and the cluster's
 *  client Service (clients dial that), short and fully qualified. */
export function memberHosts(ref: Pick<ClusterRef, 'namespace' | 'name'>, member: string): string[] {
  const own = memberHost(ref, member);
  const client = `${clientServiceName(ref.name)}.${ref.namespace}.svc`;
  return [
    own,
    `${own}.cluster.local`,
    client,
    `${client}.cluster.local`,
    clientServiceName(ref.name),
    'localhost',
    '127.0.0.1',
  ];
}
