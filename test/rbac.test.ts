// deploy/rbac.yaml grants exactly what the controller's preflight checks it needs: no more, no less.
import { readFileSync } from 'node:fs';
import { loadAllYaml, type V1ClusterRole, type V1ClusterRoleBinding } from '@kubernetes/client-node';
import { requiredAccess } from '../controller/preflight.js';

const grants = (role: V1ClusterRole) =>
  (role.rules ?? []).flatMap((r) =>
    (r.apiGroups ?? []).flatMap((g) => (r.resources ?? []).flatMap((res) => r.verbs.map((v) => `${v} ${res}.${g}`))),
  );

describe('deploy/rbac.yaml', () => {
  const docs = loadAllYaml(readFileSync(new URL('../deploy/rbac.yaml', import.meta.url), 'utf8')) as { kind: string }[];
  const role = docs.find((d) => d.kind === 'ClusterRole') as V1ClusterRole;

  it('grants every verb the controller uses and nothing else', () => {
    const needed = requiredAccess.flatMap((a) => a.verbs.map((v) => `${v} ${a.resource}.${a.group}`));
    expect(grants(role).sort()).toEqual(needed.sort());
  });

  it('binds the role to the controller ServiceAccount', () => {
    const binding = docs.find((d) => d.kind === 'ClusterRoleBinding') as V1ClusterRoleBinding;
    expect(binding.subjects?.map((s) => ({ ...s }))).toEqual([
      { kind: 'ServiceAccount', name: 'kube-etcd-controller', namespace: 'kube-etcd-controller' },
    ]);
  });
});
