// The controller's kustomize base (deploy/) and the overlay the README shows users, rendered by kubectl's
// own kustomize: the overlay's image, Temporal address, watched namespaces and resources land on the
// Deployment, and the base still carries the CRD and the RBAC the controller checks.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { bins } from '../local/toolchain.js';

const render = (dir: string) => execFileSync(bins.kubectl, ['kustomize', dir], { encoding: 'utf8' });

test('kubectl kustomize deploy/ renders the CRD, RBAC and controller', () => {
  const out = render('deploy');
  for (const kind of [
    'CustomResourceDefinition',
    'Namespace',
    'Deployment',
    'ServiceAccount',
    'ClusterRole',
    'ClusterRoleBinding',
  ]) {
    expect(out).toMatch(new RegExp(`^kind: ${kind}$`, 'm'));
  }
});

test("the README's overlay sets the image, Temporal address, watched namespaces and resources", () => {
  const readme = readFileSync('README.md', 'utf8');
  const snippet = /```yaml\n# my-overlay\/kustomization\.yaml\n([\s\S]*?)```/.exec(readme)?.[1];
  expect(snippet).toBeDefined();
  const dir = mkdtempSync(join(tmpdir(), 'kec-overlay-'));
  try {
    writeFileSync(
      join(dir, 'kustomization.yaml'),
      snippet!.replace('<relative path to this repository>/deploy', relative(dir, resolve('deploy'))),
    );
    const out = render(dir);
    expect(out).toContain('image: registry.example.com/kube-etcd-controller:v0.1.0');
    expect(out).toMatch(/name: TEMPORAL_ADDRESS\n\s+value: temporal\.platform\.svc:7233/);
    expect(out).toMatch(/name: WATCH_NAMESPACES\n\s+value: team-a,team-b/);
    expect(out).toMatch(/name: METRICS_PORT/); // the base's other settings stay
    expect(out).toMatch(/limits:\n\s+memory: 1Gi/);
    expect(out).toMatch(/^kind: CustomResourceDefinition$/m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
