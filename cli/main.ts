#!/usr/bin/env -S npx tsx
// kube-etcd-controller CLI: `npm run cli -- <command>` (or `npx tsx cli/main.ts <command>`).
//   status <cluster>                         members, conditions and the running operation
//   migrate --endpoints URL[,URL] --name N --size S [--dry-run]   adopt an unmanaged etcd
//   pause <cluster> | resume <cluster>       stop / allow changes (spec.paused)
//   cancel <cluster>                         cancel the running operation
//   backup <cluster>                         take a snapshot now (a backupCluster workflow run)
//   backups <cluster>                        list snapshots (revision, size, sha256, validity)
//   restore <cluster>                        restore after quorum loss (when spec.backup.autoRestore is false)
//   restore <cluster> --into <new> [--backup NAME]   a new cluster started from <cluster>'s newest (or named) backup
// Common: -n/--namespace (default "default"); KUBECONFIG (default .local/kubeconfig when present),
// TEMPORAL_ADDRESS (default 127.0.0.1:7233), TEMPORAL_NAMESPACE, TASK_QUEUE.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { mergePatch } from '../activities/kube.js';
import {
  backupTokenSecretName,
  clientServiceName,
  clientTlsSecretName,
  clusterWorkflowId,
  manualBackupWorkflowId,
  migrationWorkflowId,
  searchTags,
  taskQueue as defaultTaskQueue,
} from '../api/names.js';
import type { MigrationInput, MigrationResult } from '../workflows/migration.js';
import {
  EtcdClusterObject,
  apiVersion,
  backupToolSelector,
  kind,
  resource,
  rotateCertsAnnotation,
} from '../api/etcdcluster.js';
import { backupWorkflowType, cancelOperationSignal, migrateWorkflowType, restoreSignal } from '../api/workflows.js';

const usage =
  'usage: kube-etcd-controller <status|pause|resume|cancel|backup|backups|restore> <cluster> [-n namespace]\n' +
  '       kube-etcd-controller restore <cluster> --into <new-cluster> [--backup NAME] [-n namespace]\n' +
  '       kube-etcd-controller client-cert <cluster> [--out DIR] [-n namespace]   (TLS clusters: etcdctl files)\n' +
  '       kube-etcd-controller rotate-certs <cluster> [--ca] [-n namespace]   (TLS clusters: renew certificates now)\n' +
  '       kube-etcd-controller migrate --endpoints URL[,URL] --name NAME [--size N] [--dry-run] [-n namespace]';
const options = {
  namespace: { type: 'string', short: 'n', default: 'default' },
  endpoints: { type: 'string' },
  name: { type: 'string' },
  size: { type: 'string', default: '3' },
  'dry-run': { type: 'boolean', default: false },
  into: { type: 'string' },
  backup: { type: 'string' },
  out: { type: 'string' },
  ca: { type: 'boolean', default: false },
} as const;
let parsed: ReturnType<typeof parseArgs<{ allowPositionals: true; options: typeof options }>>;
try {
  parsed = parseArgs({ allowPositionals: true, options });
} catch (e) {
  console.error(`error: ${(e as Error).message}\n${usage}`);
  process.exit(2);
}
const { values, positionals } = parsed;
const [command, target] = positionals;
const ns = values.namespace!;
const env = process.env;

function kube(): KubeConfig {
  const kc = new KubeConfig();
  if (env.KUBECONFIG) kc.loadFromFile(env.KUBECONFIG);
  else if (existsSync('.local/kubeconfig')) kc.loadFromFile('.local/kubeconfig');
  else kc.loadFromDefault();
  return kc;
}

async function temporal(): Promise<Client> {
  const address = env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233';
  const connection = await Connection.connect({ address, connectTimeout: '5s' }).catch((e) =>
    fail(
      `cannot reach Temporal at ${address} (${(e as Error).message.split('\n')[0]}): set TEMPORAL_ADDRESS, or start the local stack with \`npm start\``,
    ),
  );
  return new Client({ connection, namespace: env.TEMPORAL_NAMESPACE ?? 'default' });
}

/** The EtcdCluster object, or an error that says whether it is missing or Kubernetes is unreachable. */
async function getCluster(name: string): Promise<unknown> {
  const kc = kube();
  return kc
    .makeApiClient(CustomObjectsApi)
    .getNamespacedCustomObject({ ...resource, namespace: ns, name })
    .catch((e) => {
      if ((e as { code?: number }).code === 404)
        fail(
          `EtcdCluster ${ns}/${name} not found (list them with \`kubectl get etcdclusters -n ${ns}\`, or pick the namespace with -n)`,
        );
      return fail(
        `cannot read EtcdCluster ${ns}/${name} from ${kc.getCurrentCluster()?.server ?? 'Kubernetes'}: ${(e as Error).message.split('\n')[0]} (check KUBECONFIG)`,
      );
    });
}

const fail = (msg: string): never => {
  console.error(`error: ${msg}`);
  process.exit(1);
};
const need = (v: string | undefined, what: string) => v ?? fail(`${what} is required`);

async function status(name: string): Promise<void> {
  const c = (await getCluster(name)) as EtcdClusterObject;
  const s = c.status ?? {};
  console.log(
    `${ns}/${name}: ${s.phase ?? 'Pending'}  size ${c.spec.size}  ready ${s.readyMembers ?? 0}  version ${s.currentVersion ?? '-'}${c.spec.paused ? '  (paused)' : ''}`,
  );
  if (s.reason) console.log(`  ${s.reason}`);
  if (s.clientURLs?.length) console.log(`  clients: ${s.clientURLs.join(', ')}`);
  console.log('  MEMBER                 IP               NODE         VERSION   ROLE      HEALTH');
  for (const m of s.memberStatuses ?? []) {
    console.log(
      `  ${m.name.padEnd(22)} ${(m.podIP ?? '-').padEnd(16)} ${(m.node ?? '-').padEnd(12)} ${(m.version ?? '-').padEnd(9)} ${(m.leader ? 'leader' : m.learner ? 'learner' : 'follower').padEnd(9)} ${m.healthy ? 'healthy' : 'UNHEALTHY'}`,
    );
  }
  for (const k of s.conditions ?? []) console.log(`  ${k.type}=${k.status} (${k.reason}): ${k.message}`);
  if (s.currentOperation)
    console.log(
      `  running: ${s.currentOperation.type} [${s.currentOperation.workflowId}]${s.currentOperation.step ? ` — ${s.currentOperation.step}` : ''}`,
    );
  for (const o of (s.lastOperations ?? []).slice(-3)) console.log(`  last: ${o.type} ${o.result}: ${o.message}`);
}

async function migrate(): Promise<void> {
  const input: MigrationInput = {
    namespace: ns,
    name: need(values.name, '--name'),
    size: Number(values.size),
    endpoints: need(values.endpoints, '--endpoints')
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean),
    dryRun: values['dry-run'],
  };
  if (!(input.size >= 1 && input.size <= 9)) fail('--size must be 1-9');
  const client = await temporal();
  const workflowId = migrationWorkflowId(input, input.dryRun);
  const handle = await client.workflow.start(migrateWorkflowType, {
    workflowId,
    taskQueue: env.TASK_QUEUE ?? defaultTaskQueue,
    args: [input],
    typedSearchAttributes: searchTags(input, 'migrate'),
    staticSummary: `adopt ${input.endpoints.join(',')} as ${ns}/${input.name}${input.dryRun ? ' (dry run)' : ''}`,
  });
  console.log(`started ${workflowId}`);
  let last = '';
  let inflight: Promise<void> | undefined;
  const poll = setInterval(() => {
    inflight ??= handle
      .query<{ step: string; stepsDone: number }>('progress')
      .then((p) => {
        if (p.step !== last) {
          last = p.step;
          console.log(`  [${p.stepsDone}] ${p.step}`);
        }
      })
      .catch(() => undefined) // not started yet, or no worker at the moment
      .finally(() => {
        inflight = undefined;
      });
  }, 500);
  try {
    const r = (await resultOf(handle)) as MigrationResult;
    clearInterval(poll);
    console.log(r.dryRun ? 'plan (dry run, nothing changed):' : 'done:');
    for (const line of r.plan) console.log(`  - ${line}`);
    console.log(r.message);
  } catch (e) {
    clearInterval(poll);
    const inner =
      e instanceof WorkflowFailedError ? (e.cause as { cause?: Error; message?: string } | undefined) : undefined;
    const cause = inner?.cause?.message ?? inner?.message ?? (e as Error).message;
    fail(`migration failed: ${cause}`);
  } finally {
    clearInterval(poll);
    // A progress query still in flight must not turn a finished migration into an error.
    await Promise.race([inflight, new Promise((r) => setTimeout(r, 2000).unref())]);
    await client.connection.close().catch(() => undefined);
  }
}

/** The workflow's result; a transient RPC error while waiting is retried (the workflow goes on anyway). */
async function resultOf(handle: { result(): Promise<unknown> }): Promise<unknown> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await handle.result();
    } catch (e) {
      if (e instanceof WorkflowFailedError || attempt >= 5) throw e;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

async function setPaused(name: string, paused: boolean): Promise<void> {
  const custom = kube().makeApiClient(CustomObjectsApi);
  await custom.patchNamespacedCustomObject(
    { ...resource, namespace: ns, name, body: { spec: { paused } } },
    mergePatch(),
  );
  console.log(`${ns}/${name}: ${paused ? 'paused (no changes until resumed)' : 'resumed'}`);
}

async function cancel(name: string): Promise<void> {
  await getCluster(name);
  const client = await temporal();
  await client.workflow.getHandle(clusterWorkflowId({ namespace: ns, name })).signal(cancelOperationSignal);
  console.log(`${ns}/${name}: cancel requested for the running operation`);
  await client.connection.close();
}

async function clusterRef(name: string) {
  const c = (await getCluster(name)) as { metadata: { uid: string }; spec: { backup?: Record<string, unknown> } };
  if (!c.spec.backup)
    fail(
      `EtcdCluster ${ns}/${name} has no spec.backup: add one (e.g. {"maxSnapshot":5,"snapshotIntervalInSecond":1800,"volumeSizeInMB":512})`,
    );
  return { ref: { namespace: ns, name, uid: c.metadata.uid }, backup: c.spec.backup! };
}

async function backupNow(name: string): Promise<void> {
  const { ref, backup } = await clusterRef(name);
  const client = await temporal();
  const workflowId = manualBackupWorkflowId(ref, new Date());
  try {
    const r = (await client.workflow.execute(backupWorkflowType, {
      workflowId,
      taskQueue: env.TASK_QUEUE ?? defaultTaskQueue,
      args: [{ ref, backup, reason: 'on demand (CLI)' }],
      typedSearchAttributes: searchTags(ref, 'backup'),
      staticSummary: 'backup now (CLI)',
    })) as { message: string };
    console.log(`${workflowId}: ${r.message}`);
  } catch (e) {
    fail(`backup failed: ${(e as Error).message}`);
  } finally {
    await client.connection.close();
  }
}

async function listBackups(name: string): Promise<void> {
  await clusterRef(name);
  const core = kube().makeApiClient(CoreV1Api);
  const pods = await core.listNamespacedPod({ namespace: ns, labelSelector: backupToolSelector(name) });
  const ip = pods.items.find((p) => p.status?.podIP)?.status?.podIP ?? fail('backup tool is not running');
  // The tool answers only the controller's token (Secret <cluster>-backup-token), listings and downloads too.
  const secret = await core
    .readNamespacedSecret({ name: backupTokenSecretName(name), namespace: ns })
    .catch(() => fail(`no Secret ${ns}/${backupTokenSecretName(name)}: the backup tool's token`));
  const token = Buffer.from(secret.data?.token ?? '', 'base64').toString('utf8');
  const res = await fetch(`http://${ip}:19999/v1/backups`, { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) fail(`listing the backups failed: HTTP ${res.status}`);
  const list = (await res.json()) as {
    name: string;
    revision: number;
    size: number;
    sha256: string;
    time: string;
    valid: boolean;
    problem?: string;
  }[];
  console.log(
    'NAME                                                  REVISION   SIZE       TIME                      VALID',
  );
  for (const b of list)
    console.log(
      `${b.name.padEnd(53)} ${String(b.revision).padEnd(10)} ${String(b.size).padEnd(10)} ${b.time.padEnd(25)} ${b.valid ? 'yes' : `NO: ${b.problem}`}`,
    );
  console.log(
    `download: curl -H "Authorization: Bearer $(kubectl -n ${ns} get secret ${backupTokenSecretName(name)} ` +
      `-o jsonpath='{.data.token}' | base64 -d)" -o snap.db http://${ip}:19999/v1/backups/<NAME>`,
  );
}

/** A new EtcdCluster like <name> (size, version, backup destination) that starts from its backup (spec.restore). */
async function restoreInto(name: string, into: string, backup?: string): Promise<void> {
  const src = (await getCluster(name)) as {
    metadata: { uid: string };
    spec: {
      size: number;
      version: string;
      repository?: string;
      backup?: Record<string, unknown>;
      tls?: Record<string, unknown>;
    };
  };
  if (!src.spec.backup) fail(`EtcdCluster ${ns}/${name} has no spec.backup: it has no backups to start from`);
  const { size, version, repository, backup: dest, tls } = src.spec;
  const restore = { cluster: name, ...(backup ? { backup } : { uid: src.metadata.uid }) };
  await kube()
    .makeApiClient(CustomObjectsApi)
    .createNamespacedCustomObject({
      ...resource,
      namespace: ns,
      body: {
        apiVersion,
        kind,
        metadata: { name: into },
        spec: { size, version, repository, backup: dest, restore, ...(tls ? { tls } : {}) },
      },
    });
  console.log(
    `${ns}/${into}: created from ${backup ? `backup ${backup}` : 'the newest valid backup'} of ${ns}/${name}; ` +
      `follow it with \`status ${into}\` (status.restoredFrom says what was restored)`,
  );
}

async function restore(name: string): Promise<void> {
  if (parsed.values.into) return restoreInto(name, parsed.values.into, parsed.values.backup);
  await getCluster(name);
  const client = await temporal();
  await client.workflow.getHandle(clusterWorkflowId({ namespace: ns, name })).signal(restoreSignal);
  console.log(`${ns}/${name}: restore requested; follow it with \`status ${name}\``);
  await client.connection.close();
}

/** A TLS cluster's client certificate (Secret <cluster>-client-tls) as files for etcdctl, and the flags to use. */
async function clientCert(name: string): Promise<void> {
  await getCluster(name);
  const secret = await kube()
    .makeApiClient(CoreV1Api)
    .readNamespacedSecret({ name: clientTlsSecretName(name), namespace: ns })
    .catch(() => fail(`no Secret ${ns}/${clientTlsSecretName(name)}: ${ns}/${name} is not a TLS cluster (spec.tls)`));
  const dir = parsed.values.out ?? `${name}-tls`;
  mkdirSync(dir, { recursive: true });
  for (const k of ['ca.crt', 'tls.crt', 'tls.key'])
    writeFileSync(join(dir, k), Buffer.from(secret.data?.[k] ?? '', 'base64'), { mode: 0o600 });
  console.log(
    `wrote ${dir}/ca.crt, tls.crt, tls.key; use:\n  etcdctl --endpoints https://${clientServiceName(name)}.${ns}.svc:2379 ` +
      `--cacert ${dir}/ca.crt --cert ${dir}/tls.crt --key ${dir}/tls.key endpoint health`,
  );
}

/** Asks for a certificate rotation now (the CA too with --ca): a new value of the rotate-certs annotation. */
async function rotateCerts(name: string): Promise<void> {
  const c = (await getCluster(name)) as { status?: { tls?: { enabled?: boolean; rotations?: number } } };
  if (!c.status?.tls?.enabled) fail(`${ns}/${name} is not a TLS cluster (spec.tls)`);
  const request = `${parsed.values.ca ? 'ca' : 'certs'}-${new Date().toISOString()}`;
  await kube()
    .makeApiClient(CustomObjectsApi)
    .patchNamespacedCustomObject(
      { ...resource, namespace: ns, name, body: { metadata: { annotations: { [rotateCertsAnnotation]: request } } } },
      mergePatch(),
    );
  const id = `${clusterWorkflowId({ namespace: ns, name })}/rotate-certs-${(c.status?.tls?.rotations ?? 0) + 1}`;
  console.log(
    `${ns}/${name}: rotation of the certificates${parsed.values.ca ? ' and the CA' : ''} requested (${request}); workflow ${id}`,
  );
}

const commands: Record<string, () => Promise<void>> = {
  backup: () => backupNow(need(target, 'cluster name')),
  backups: () => listBackups(need(target, 'cluster name')),
  restore: () => restore(need(target, 'cluster name')),
  status: () => status(need(target, 'cluster name')),
  'client-cert': () => clientCert(need(target, 'cluster name')),
  'rotate-certs': () => rotateCerts(need(target, 'cluster name')),
  migrate,
  pause: () => setPaused(need(target, 'cluster name'), true),
  resume: () => setPaused(need(target, 'cluster name'), false),
  cancel: () => cancel(need(target, 'cluster name')),
};
const run = commands[command ?? ''];
if (!run) {
  console.error(`error: unknown command "${command ?? ''}"; use one of: ${Object.keys(commands).join(', ')}\n${usage}`);
  process.exit(2);
}
run!().catch((e) => fail((e as Error).message));
