// etcd authentication (issue 18): a root user and role (the controller's and the backup tool's) and one user + role per
// application user of spec.auth, each password generated here into a Secret and never logged. Look before acting:
// etcd's users, roles and grants are read first and only what differs is changed (authPlan, pure); authEnable and
// authDisable are no-ops in etcd when already so. etcd needs the root user with the root role before auth can be
// enabled (3.4–3.6); once it is on, user and role changes, MemberAdd/Remove/Promote, Snapshot, Defragment, MoveLeader,
// Alarm deactivation (and on 3.6.0 Status) need root: the controller's calls carry the root token (etcd-client.ts).
import { randomBytes } from 'node:crypto';
import type { CoreV1Api } from '@kubernetes/client-node';
import { ApplicationFailure } from '@temporalio/common';
import { Range, type Etcd3 } from 'etcd3';
import {
  authInUseAnnotation,
  clusterLabels,
  type AuthSpec,
  type AuthUser,
  type ClusterRef,
  group,
  version,
  plural,
} from '../api/etcdcluster.js';
import { rootCredentialsSecretName, userCredentialsSecretName } from '../api/names.js';
import type { Deps } from './deps.js';
import { clientURLOf, deadline, forgetAuth, readCredentials, withEtcd } from './etcd-client.js';
import { createIfAbsent, isNotFound, mergePatch, runningMemberPods } from './kube.js';
import { ownerReference } from './member-pod.js';

export const rootUser = 'root';
/** On a credentials Secret the controller made: the etcd user it holds (users removed from the spec are found by it). */
const authUserLabel = 'etcd.coreos.com/auth-user';

/** One permission of a role: etcd's type and the key range [key, end) as hex (byte-exact, as etcd compares). */
export interface Grant {
  permission: 'Read' | 'Write' | 'Readwrite';
  key: string;
  end: string;
}

/** What etcd holds: each user's roles and each role's grants. */
export interface AuthSeen {
  users: Record<string, string[]>;
  roles: Record<string, Grant[]>;
}

export type AuthStep =
  | { do: 'add-user'; user: string }
  | { do: 'add-role'; role: string }
  | { do: 'grant'; role: string; grant: Grant }
  | { do: 'revoke'; role: string; grant: Grant }
  | { do: 'grant-role'; user: string; role: string }
  | { do: 'delete-user'; user: string }
  | { do: 'delete-role'; role: string };

const hex = (s: string | Buffer) => Buffer.from(s).toString('hex');

/** The grant of an application user: read, or read and write, on every key under its prefix. */
export function grantOf(u: AuthUser): Grant {
  const r = Range.prefix(u.keyPrefix);
  return { permission: u.readOnly ? 'Read' : 'Readwrite', key: hex(r.start), end: hex(r.end) };
}

const same = (a: Grant, b: Grant) => a.permission === b.permission && a.key === b.key && a.end === b.end;

/** The steps from what etcd holds to what the spec asks: root with the root role, each user with its own role holding
 *  exactly its grant, and the users in `gone` (ours, no longer in the spec) deleted with their roles. Pure. */
export function authPlan(seen: AuthSeen, users: AuthUser[], gone: string[]): AuthStep[] {
  const steps: AuthStep[] = [];
  const ensureUser = (user: string, role: string, grant?: Grant) => {
    if (!(user in seen.users)) steps.push({ do: 'add-user', user });
    // etcd has no root role until it is added; it then holds every permission by its name and takes no grants.
    if (!(role in seen.roles)) steps.push({ do: 'add-role', role });
    if (grant) {
      const held = seen.roles[role] ?? [];
      for (const g of held) if (!same(g, grant)) steps.push({ do: 'revoke', role, grant: g });
      if (!held.some((g) => same(g, grant))) steps.push({ do: 'grant', role, grant });
    }
    if (!(seen.users[user] ?? []).includes(role)) steps.push({ do: 'grant-role', user, role });
  };
  ensureUser(rootUser, rootUser);
  for (const u of users) ensureUser(u.name, u.name, grantOf(u));
  for (const user of gone) {
    if (user === rootUser || users.some((u) => u.name === user)) continue;
    if (user in seen.users) steps.push({ do: 'delete-user', user });
    if (user in seen.roles) steps.push({ do: 'delete-role', role: user });
  }
  return steps;
}

/** What a step does, for an Event (never a password). */
export function describeStep(s: AuthStep): string {
  switch (s.do) {
    case 'add-user':
      return `user ${s.user} created`;
    case 'add-role':
      return `role ${s.role} created`;
    case 'grant':
    case 'revoke': {
      const key = Buffer.from(s.grant.key, 'hex').toString();
      return `role ${s.role}: ${s.grant.permission} on prefix ${JSON.stringify(key)} ${s.do === 'grant' ? 'granted' : 'revoked'}`;
    }
    case 'grant-role':
      return `user ${s.user} given role ${s.role}`;
    case 'delete-user':
      return `user ${s.user} deleted (removed from spec.auth.users; its Secret is kept, its password no longer works)`;
    case 'delete-role':
      return `role ${s.role} deleted`;
  }
}

/** A new password: 24 random bytes, URL-safe. */
const newPassword = () => randomBytes(24).toString('base64url');

export const credentialsSecretName = (cluster: string, user: string) =>
  user === rootUser ? rootCredentialsSecretName(cluster) : userCredentialsSecretName(cluster, user);

/** A user's credentials Secret (username, password), created with a fresh password only when absent. The backup tool
 *  mounts root's, so it is made before the tool too. */
export async function ensureCredentialsSecret(
  core: CoreV1Api,
  ref: ClusterRef,
  user: string,
): Promise<'created' | 'exists'> {
  return createIfAbsent(() =>
    core.createNamespacedSecret({
      namespace: ref.namespace,
      body: {
        metadata: {
          name: credentialsSecretName(ref.name, user),
          namespace: ref.namespace,
          labels: { ...clusterLabels(ref.name), [authUserLabel]: user },
          ownerReferences: [ownerReference(ref)],
        },
        type: 'kubernetes.io/basic-auth',
        stringData: { username: user, password: newPassword() },
      },
    }),
  );
}

/** What the auth step did, for the workflow's Events and status. */
export interface AuthOutcome {
  enabled: boolean;
  users: string[];
  /** Each change, in order (described, no secret). */
  changes: string[];
}

/** Makes etcd's auth what spec.auth says (see the top of this file). Idempotent: run again, it finds nothing to do. */
export async function reconcileAuth({ kube, log }: Deps, ref: ClusterRef, auth: AuthSpec): Promise<AuthOutcome> {
  const core = kube.core;
  const users = auth.users ?? [];
  if (users.some((u) => u.name === rootUser))
    throw ApplicationFailure.nonRetryable('spec.auth.users: root is the controller’s own user', 'InvalidSpec');
  const changes: string[] = [];
  // Secrets first: a password exists before its user does. Created with a fresh password only when absent.
  const created = new Set<string>();
  for (const user of [rootUser, ...users.map((u) => u.name)])
    if ((await ensureCredentialsSecret(core, ref, user)) === 'created') {
      created.add(user);
      changes.push(`Secret ${credentialsSecretName(ref.name, user)} created for user ${user}`);
    }
  // The controller asks with the root token from here on (none while etcd says auth is not enabled).
  if (auth.enabled) await markInUse(kube, ref, true);
  forgetAuth(ref.namespace, ref.name);
  const urls = (await runningMemberPods(core, ref)).map((p) => clientURLOf(p.status!.podIP!));
  const password = async (user: string) => {
    const secret = credentialsSecretName(ref.name, user);
    const c = await readCredentials(core, ref.namespace, secret);
    if (!c?.password) throw new Error(`Secret ${secret} holds no password`);
    return c.password;
  };
  await withEtcd(
    urls,
    async (c) => {
      const seen = await seeAuth(c);
      // Users etcd has that the spec no longer lists and whose Secret we made: ours to delete (others are left alone).
      const gone: string[] = [];
      for (const u of Object.keys(seen.users))
        if (u !== rootUser && !users.some((x) => x.name === u) && (await madeByUs(core, ref, u))) gone.push(u);
      for (const step of authPlan(seen, users, gone)) {
        await apply(c, step, password);
        changes.push(describeStep(step));
      }
      // A Secret made anew for a user etcd already had (deleted by hand): etcd takes its password.
      for (const user of created)
        if (user in seen.users) {
          await c.user(user).setPassword(await password(user), deadline(5000));
          changes.push(`user ${user}: password set from its new Secret`);
        }
      if (auth.enabled) await c.auth.authEnable(deadline(5000));
      else await c.auth.authDisable(deadline(5000));
    },
    10000,
  );
  forgetAuth(ref.namespace, ref.name);
  if (!auth.enabled) await markInUse(kube, ref, false);
  const status = { enabled: auth.enabled, users: users.map((u) => u.name) };
  await kube.custom
    .patchNamespacedCustomObjectStatus(
      { group, version, plural, namespace: ref.namespace, name: ref.name, body: { status: { auth: status } } },
      mergePatch(),
    )
    .catch((e) => {
      if (!isNotFound(e)) throw e;
    });
  log.info(
    { cluster: `${ref.namespace}/${ref.name}`, enabled: auth.enabled, users: status.users },
    'etcd auth reconciled',
  );
  return { ...status, changes };
}

/** Marks the root Secret in use (the controller and its token) or not. */
async function markInUse(kube: Deps['kube'], ref: ClusterRef, inUse: boolean): Promise<void> {
  // Read and replace (RBAC: the controller gets, creates and updates Secrets; it never lists, patches or deletes them).
  const name = rootCredentialsSecretName(ref.name);
  const s = await kube.core.readNamespacedSecret({ name, namespace: ref.namespace });
  const annotations = { ...(s.metadata?.annotations ?? {}) };
  if ((annotations[authInUseAnnotation] === 'true') === inUse) return;
  if (inUse) annotations[authInUseAnnotation] = 'true';
  else delete annotations[authInUseAnnotation];
  await kube.core.replaceNamespacedSecret({
    name,
    namespace: ref.namespace,
    body: { ...s, metadata: { ...s.metadata, annotations } },
  });
}

/** A user whose credentials Secret the controller made (label), i.e. one it may delete. */
async function madeByUs(core: CoreV1Api, ref: ClusterRef, user: string): Promise<boolean> {
  const s = await core
    .readNamespacedSecret({ name: userCredentialsSecretName(ref.name, user), namespace: ref.namespace })
    .catch((e) => {
      if (isNotFound(e)) return undefined;
      throw e;
    });
  return s?.metadata?.labels?.[authUserLabel] === user;
}

/** etcd's users with their roles and roles with their grants. */
async function seeAuth(c: Etcd3): Promise<AuthSeen> {
  const users: Record<string, string[]> = {};
  const roles: Record<string, Grant[]> = {};
  for (const u of await c.getUsers()) users[u.name] = (await u.roles()).map((r) => r.name);
  for (const r of await c.getRoles())
    roles[r.name] =
      r.name === rootUser
        ? []
        : (await r.permissions()).map((p) => ({
            permission: p.permission,
            key: hex(p.range.start),
            end: hex(p.range.end),
          }));
  return { users, roles };
}

async function apply(c: Etcd3, s: AuthStep, password: (user: string) => Promise<string>): Promise<void> {
  const range = (g: Grant) => new Range(Buffer.from(g.key, 'hex'), Buffer.from(g.end, 'hex'));
  const opts = deadline(5000);
  switch (s.do) {
    case 'add-user':
      return void (await c.user(s.user).create(await password(s.user), opts));
    case 'add-role':
      return void (await c.role(s.role).create(opts));
    case 'grant':
      return void (await c.role(s.role).grant({ permission: s.grant.permission, range: range(s.grant) }, opts));
    case 'revoke':
      return void (await c.role(s.role).revoke({ permission: s.grant.permission, range: range(s.grant) }, opts));
    case 'grant-role':
      return void (await c.user(s.user).addRole(s.role, opts));
    case 'delete-user':
      return void (await c.user(s.user).delete(opts));
    case 'delete-role':
      return void (await c.role(s.role).delete(opts));
  }
}
