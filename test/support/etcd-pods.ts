// Hand-written etcd pods (an "unmanaged" etcd, as a user might run it), for the real-nodes and migration tests.
import type { V1Pod, V1Service } from '@kubernetes/client-node';

export interface EtcdPodOpts {
  version: string;
  cluster?: string[];
  subdomain: string;
  claim?: string;
  antiAffinity?: boolean;
  namespace?: string;
  httpProbe?: boolean;
  /** Serve etcd's v2 API (3.5: off by default), as an old deployment might. */
  enableV2?: boolean;
}

export function etcdPod(name: string, o: EtcdPodOpts): V1Pod {
  const ns = o.namespace ?? 'default';
  const peer = (m: string) => `http://${m}.${o.subdomain}.${ns}.svc:2380`;
  const members = o.cluster ?? [name];
  return {
    metadata: { name, labels: { app: 'etcd-test', group: o.subdomain } },
    spec: {
      hostname: name,
      subdomain: o.subdomain,
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 5,
      automountServiceAccountToken: false,
      ...(o.antiAffinity
        ? {
            affinity: {
              podAntiAffinity: {
                requiredDuringSchedulingIgnoredDuringExecution: [
                  { labelSelector: { matchLabels: { group: o.subdomain } }, topologyKey: 'kubernetes.io/hostname' },
                ],
              },
            },
          }
        : {}),
      containers: [
        {
          name: 'etcd',
          image: `quay.io/coreos/etcd:v${o.version}`,
          command: [
            '/usr/local/bin/etcd',
            '--name=$(POD_NAME)',
            '--data-dir=/var/etcd/data',
            '--logger=zap',
            '--listen-client-urls=http://0.0.0.0:2379',
            `--advertise-client-urls=http://$(POD_NAME).${o.subdomain}.${ns}.svc:2379`,
            '--listen-peer-urls=http://0.0.0.0:2380',
            `--initial-advertise-peer-urls=${peer('$(POD_NAME)')}`,
            `--initial-cluster=${members.map((m) => `${m}=${peer(m)}`).join(',')}`,
            '--initial-cluster-state=new',
            ...(o.enableV2 ? ['--enable-v2'] : []),
          ],
          env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
          readinessProbe: o.httpProbe
            ? { httpGet: { path: '/health', port: 2379 }, periodSeconds: 1, failureThreshold: 3 }
            : { tcpSocket: { port: 2379 }, periodSeconds: 1, failureThreshold: 3 },
          volumeMounts: [{ name: 'data', mountPath: '/var/etcd' }],
        },
      ],
      volumes: [
        o.claim ? { name: 'data', persistentVolumeClaim: { claimName: o.claim } } : { name: 'data', emptyDir: {} },
      ],
    },
  };
}

/** The headless Service that gives the pods of one subdomain their names (<pod>.<subdomain>.<ns>.svc) on real nodes'
 *  CoreDNS, not-ready ones too: members resolve each other before any is Ready. */
export function etcdPodsService(subdomain: string): V1Service {
  return {
    metadata: { name: subdomain },
    spec: {
      clusterIP: 'None',
      publishNotReadyAddresses: true,
      selector: { group: subdomain },
      ports: [{ port: 2380 }],
    },
  };
}
