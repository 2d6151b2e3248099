// The etcd auth plan (activities/auth.ts, issue 18): from etcd's users, roles and grants to what spec.auth asks. Pure.
import { authPlan, describeStep, grantOf, type AuthSeen } from '../activities/auth.js';

const hex = (s: string) => Buffer.from(s).toString('hex');
const app = { name: 'app', keyPrefix: 'app/' };

test('a fresh etcd: root user and role, then each user with its own role granting its prefix', () => {
  const steps = authPlan({ users: {}, roles: {} }, [app, { name: 'ro', keyPrefix: 'x', readOnly: true }], []);
  expect(steps.map(describeStep)).toEqual([
    'user root created',
    'role root created',
    'user root given role root',
    'user app created',
    'role app created',
    'role app: Readwrite on prefix "app/" granted',
    'user app given role app',
    'user ro created',
    'role ro created',
    'role ro: Read on prefix "x" granted',
    'user ro given role ro',
  ]);
  // A prefix is [prefix, prefix with its last byte + 1), as etcd's --prefix.
  expect(grantOf(app)).toEqual({ permission: 'Readwrite', key: hex('app/'), end: hex('app0') });
});

test('what etcd already holds is left alone: run again, nothing to do', () => {
  const seen: AuthSeen = {
    users: { root: ['root'], app: ['app'] },
    roles: { root: [], app: [grantOf(app)] },
  };
  expect(authPlan(seen, [app], [])).toEqual([]);
});

test('a changed prefix or mode: the old grant revoked, the new one granted', () => {
  const seen: AuthSeen = { users: { root: ['root'], app: ['app'] }, roles: { root: [], app: [grantOf(app)] } };
  const steps = authPlan(seen, [{ ...app, readOnly: true }], []);
  expect(steps.map(describeStep)).toEqual([
    'role app: Readwrite on prefix "app/" revoked',
    'role app: Read on prefix "app/" granted',
  ]);
});

test('a user removed from the spec: it and its role deleted; root and users etcd lacks are never deleted', () => {
  const seen: AuthSeen = {
    users: { root: ['root'], app: ['app'], old: ['old'] },
    roles: { root: [], app: [grantOf(app)], old: [] },
  };
  expect(authPlan(seen, [app], ['old', 'root', 'app', 'never-made']).map(describeStep)).toEqual([
    'user old deleted (removed from spec.auth.users; its Secret is kept, its password no longer works)',
    'role old deleted',
  ]);
});
