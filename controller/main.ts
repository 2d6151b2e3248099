// The controller process: the Temporal worker (workflows + activities) and the CRD watcher.
// Configured by environment: KUBECONFIG, TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TASK_QUEUE,
// WATCH_NAMESPACES (comma-separated; all when empty), KEC_ROLE (all | worker | watcher),
// METRICS_PORT (Prometheus /metrics, /healthz, /readyz; off when unset), KEC_WAIT_CAP_SECONDS (tests only: caps
// the wait deadlines of operations, see workflows/activities.ts), KEC_MAX_CACHED_WORKFLOWS,
// KEC_MAX_CONCURRENT_WORKFLOW_TASKS, KEC_MAX_CONCURRENT_ACTIVITIES (worker sizing, see workerSizing).
import { KubeConfig } from '@kubernetes/client-node';
import { Client } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { activityLogFields, createActivities } from '../activities/index.js';
import { reuseConnections } from '../activities/kube-connections.js';
import { keptClients } from '../activities/etcd-client.js';
import { ensureBackupStorageClass, ensureCrd } from './crd.js';
import { Watcher } from './watcher.js';
import { workflowCode } from './workflow-bundle.js';
import { taskQueue as defaultTaskQueue } from '../api/names.js';
import { intEnv } from '../api/env.js';
import { makeLogger, routeTemporalLogs } from './logger.js';
import { gaugeClustersFrom, metrics, serveMetrics } from './metrics.js';
import {
  checkKubernetes,
  connectTemporalClient,
  connectTemporalWorker,
  ensureSearchAttributes,
  PreflightError,
} from './preflight.js';

const env = process.env;
const role = env.KEC_ROLE ?? 'all';
const address = env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233';
const namespace = env.TEMPORAL_NAMESPACE ?? 'default';
const taskQueue = env.TASK_QUEUE ?? defaultTaskQueue;
const watchNamespaces = env.WATCH_NAMESPACES ? env.WATCH_NAMESPACES.split(',').filter(Boolean) : [];
const log = makeLogger('kube-etcd-controller', activityLogFields);

/** Worker sizing (issue 17), explicit so memory does not follow the V8 heap flags: the SDK's default cache size is
 *  derived from the heap limit (2,310 workflows without --max-old-space-size, ~190 with the Deployment's 512 MB).
 *  Each cluster's workflow lives as long as the cluster and stays cached; one evicted replays its history (at most
 *  ~4,000 events, continue-as-new) at its next task. 200 covers 100 clusters each with an operation running. */
const workerSizing = () => ({
  maxCachedWorkflows: intEnv(env, 'KEC_MAX_CACHED_WORKFLOWS', 200),
  maxConcurrentWorkflowTaskExecutions: intEnv(env, 'KEC_MAX_CONCURRENT_WORKFLOW_TASKS', 40),
  maxConcurrentActivityTaskExecutions: intEnv(env, 'KEC_MAX_CONCURRENT_ACTIVITIES', 100),
});
let started = false;

async function main(): Promise<void> {
  routeTemporalLogs(log);
  const kc = new KubeConfig();
  // In a pod: its ServiceAccount (RBAC applies); elsewhere: KUBECONFIG or ~/.kube/config.
  if (env.KUBECONFIG) kc.loadFromFile(env.KUBECONFIG);
  else if (env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
  else kc.loadFromDefault();
  reuseConnections(kc);
  const stops: (() => Promise<void>)[] = [];

  await checkKubernetes(kc, watchNamespaces, log);
  const clientConnection = await connectTemporalClient(address);
  await ensureSearchAttributes(clientConnection, namespace, log);
  const client = new Client({ connection: clientConnection, namespace });
  log.info({ address, namespace }, 'Temporal reachable');
  stops.push(() => client.connection.close());

  if (role === 'all' || role === 'watcher') {
    await ensureCrd(kc, log);
    await ensureBackupStorageClass(kc, log, env.BACKUP_STORAGE_PROVISIONER);
  }
  if (role === 'all' || role === 'worker') {
    const connection = await connectTemporalWorker(address);
    const worker = await Worker.create({
      connection,
      namespace,
      taskQueue,
      ...workflowCode(),
      activities: createActivities({
        kc,
        log,
        controllerNamespace: env.POD_NAMESPACE,
        temporal: client,
        observe: {
          activityError: (activity) => metrics.activityErrors.inc({ activity }),
          operationFinished: (type, result, seconds) => {
            metrics.operations.inc({ type, result });
            metrics.operationSeconds.observe({ type }, seconds);
          },
        },
        crashPoints: env.KEC_CRASH_POINTS ? env.KEC_CRASH_POINTS.split(',').filter(Boolean) : undefined,
        crashMarkerDir: env.KEC_CRASH_MARKER_DIR,
      }),
      ...workerSizing(),
    });
    const running = worker.run();
    stops.push(async () => {
      worker.shutdown();
      await running;
      await connection.close();
      keptClients.close();
    });
    running.catch((e) => {
      log.error({ err: (e as Error).message }, 'worker stopped');
      process.exit(1);
    });
    log.info({ address, namespace, taskQueue }, 'worker running');
  }
  if (role === 'all' || role === 'watcher') {
    const watcher = new Watcher(kc, client, log, {
      taskQueue,
      namespaces: watchNamespaces.length ? watchNamespaces : undefined,
      relistSeconds: env.KEC_RELIST_SECONDS ? Number(env.KEC_RELIST_SECONDS) : undefined,
      waitCapSeconds: env.KEC_WAIT_CAP_SECONDS ? Number(env.KEC_WAIT_CAP_SECONDS) : undefined,
    });
    await watcher.start();
    gaugeClustersFrom(() => watcher.clusterObjects());
    stops.push(async () => {
      await watcher.stop();
    });
  }
  started = true;
  if (env.METRICS_PORT) {
    const server = serveMetrics(Number(env.METRICS_PORT), () => started);
    stops.push(async () => {
      server.close();
    });
    log.info({ port: Number(env.METRICS_PORT) }, 'metrics on /metrics, health on /healthz and /readyz');
  }
  log.info({ role }, 'kube-etcd-controller started');
  let stopping = false;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (stopping) return;
      stopping = true;
      log.info({ signal: sig }, 'shutting down');
      Promise.all(stops.map((s) => s())).then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
}

main().catch((e) => {
  // A preflight failure is the user's to fix: say what, without a stack trace.
  if (e instanceof PreflightError) log.error(`controller cannot start: ${e.message}`);
  else log.error({ err: (e as Error).message, stack: (e as Error).stack }, 'controller failed to start');
  process.exit(1);
});
