// Controller metrics through prom-client: counters, gauges, one histogram and the process's own
// metrics (RSS, CPU, event-loop lag), with bounded label values (cluster names, operation types,
// results, activity names; never error text).
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { caSecretName } from '../api/names.js';

export const registry = new Registry();

/** What the per-cluster gauges read at scrape time (the watcher's objects); set by main. */
type ClusterSummary = {
  metadata: { namespace: string; name: string };
  status?: {
    readyMembers?: number;
    tls?: { caNotAfter?: string; certificates?: { secret: string; notAfter: string }[] };
  };
};
let clusterSource: () => ClusterSummary[] = () => [];
export function gaugeClustersFrom(source: () => ClusterSummary[]): void {
  clusterSource = source;
}
collectDefaultMetrics({ register: registry, prefix: 'kec_' });

export const metrics = {
  clusters: new Gauge({
    name: 'kec_clusters',
    help: 'EtcdClusters the watcher sees',
    registers: [registry],
    collect() {
      this.set(clusterSource().length);
    },
  }),
  membersReady: new Gauge({
    name: 'kec_members_ready',
    help: 'Healthy voting members per cluster (from its status)',
    labelNames: ['cluster', 'namespace'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const c of clusterSource()) {
        this.set({ cluster: c.metadata.name, namespace: c.metadata.namespace }, c.status?.readyMembers ?? 0);
      }
    },
  }),
  certificateExpiry: new Gauge({
    name: 'kec_tls_certificate_expiry_timestamp_seconds',
    help: "When each TLS certificate Secret of a cluster expires (notAfter, Unix seconds; the CA's is <cluster>-ca)",
    labelNames: ['cluster', 'namespace', 'secret'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const c of clusterSource()) {
        const { name, namespace } = c.metadata;
        const tls = c.status?.tls;
        const all = [
          ...(tls?.caNotAfter ? [{ secret: caSecretName(name), notAfter: tls.caNotAfter }] : []),
          ...(tls?.certificates ?? []),
        ];
        for (const x of all) this.set({ cluster: name, namespace, secret: x.secret }, Date.parse(x.notAfter) / 1000);
      }
    },
  }),
  operations: new Counter({
    name: 'kec_operations_total',
    help: 'Operations finished, by type and result',
    labelNames: ['result', 'type'] as const,
    registers: [registry],
  }),
  operationSeconds: new Histogram({
    name: 'kec_operation_duration_seconds',
    help: 'Operation duration',
    labelNames: ['type'] as const,
    buckets: [1, 5, 10, 30, 60, 120, 300, 600, 1800],
    registers: [registry],
  }),
  activityErrors: new Counter({
    name: 'kec_activity_errors_total',
    help: 'Activity attempts that failed (reconcile errors), by activity',
    labelNames: ['activity'] as const,
    registers: [registry],
  }),
};

/** /metrics, /healthz (process alive) and /readyz (ready() true once worker and watcher run). */
export function serveMetrics(port: number, ready: () => boolean): Server {
  return createServer((req, res) => {
    if (req.url === '/metrics') {
      registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        () => res.writeHead(500).end(),
      );
      return;
    }
    if (req.url === '/healthz') {
      res.writeHead(200).end('ok');
      return;
    }
    if (req.url === '/readyz') {
      const ok = ready();
      res.writeHead(ok ? 200 : 503).end(ok ? 'ready' : 'starting');
      return;
    }
    res.writeHead(404).end();
  }).listen(port, process.env.METRICS_BIND ?? '127.0.0.1');
}
