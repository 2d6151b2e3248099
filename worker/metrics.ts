// Prometheus text exposition without a dependency: counters, gauges and one histogram, with
// bounded label values (cluster names, operation types, results, activity names; never error text).
import { createServer, type Server } from 'node:http';

type Labels = Record<string, string>;
const key = (l: Labels) => Object.entries(l).sort().map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, '_')}"`).join(',');

class Family {
  values = new Map<string, { labels: Labels; value: number }>();
  constructor(readonly name: string, readonly help: string, readonly type: 'counter' | 'gauge') {}
  inc(labels: Labels = {}, by = 1): void { const k = key(labels); const v = this.values.get(k); this.values.set(k, { labels, value: (v?.value ?? 0) + by }); }
  set(labels: Labels, value: number): void { this.values.set(key(labels), { labels, value }); }
  reset(): void { this.values.clear(); }
  render(): string[] {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`,
      ...[...this.values.values()].map((v) => `${this.name}${Object.keys(v.labels).length ? `{${key(v.labels)}}` : ''} ${v.value}`)];
  }
}

class Histogram {
  private data = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(readonly name: string, readonly help: string, readonly buckets: number[]) {}
  observe(labels: Labels, value: number): void {
    const k = key(labels);
    const d = this.data.get(k) ?? { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
    this.buckets.forEach((b, i) => { if (value <= b) d.counts[i]++; });
    d.sum += value; d.count++;
    this.data.set(k, d);
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const d of this.data.values()) {
      const l = key(d.labels);
      this.buckets.forEach((b, i) => out.push(`${this.name}_bucket{${l}${l ? ',' : ''}le="${b}"} ${d.counts[i]}`));
      out.push(`${this.name}_bucket{${l}${l ? ',' : ''}le="+Inf"} ${d.count}`, `${this.name}_sum{${l}} ${d.sum}`, `${this.name}_count{${l}} ${d.count}`);
    }
    return out;
  }
}

export const metrics = {
  clusters: new Family('kec_clusters', 'EtcdClusters the watcher sees', 'gauge'),
  membersReady: new Family('kec_members_ready', 'Healthy voting members per cluster (from its status)', 'gauge'),
  operations: new Family('kec_operations_total', 'Operations finished, by type and result', 'counter'),
  operationSeconds: new Histogram('kec_operation_duration_seconds', 'Operation duration', [1, 5, 10, 30, 60, 120, 300, 600, 1800]),
  activityErrors: new Family('kec_activity_errors_total', 'Activity attempts that failed (reconcile errors), by activity', 'counter'),
};

export function renderMetrics(): string {
  return [...Object.values(metrics).flatMap((m) => m.render()), ''].join('\n');
}

/** /metrics, /healthz (process alive) and /readyz (ready() true once worker and watcher run). */
export function serveMetrics(port: number, ready: () => boolean): Server {
  return createServer((req, res) => {
    if (req.url === '/metrics') { res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(renderMetrics()); return; }
    if (req.url === '/healthz') { res.writeHead(200).end('ok'); return; }
    if (req.url === '/readyz') { const ok = ready(); res.writeHead(ok ? 200 : 503).end(ok ? 'ready' : 'starting'); return; }
    res.writeHead(404).end();
  }).listen(port, process.env.METRICS_BIND ?? '127.0.0.1');
}
