// The CRD the controller applies at start: never over a newer one (a rollout where an older controller
// starts after a newer one must not take fields away from users' objects).
import { readFileSync } from 'node:fs';
import { loadYaml, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { fieldsOnlyIn } from '../controller/crd.js';
import { specFields } from '../api/etcdcluster.js';

const ours = () => loadYaml<V1CustomResourceDefinition>(readFileSync('deploy/crd.yaml', 'utf8'));

test('the same schema is not newer', () => {
  expect(fieldsOnlyIn(ours(), ours())).toEqual([]);
});

test('a schema with a field ours lacks is newer, and the field is named', () => {
  const installed = ours();
  const spec = installed.spec.versions[0].schema!.openAPIV3Schema!.properties!.spec;
  spec.properties = { ...spec.properties, futureField: { type: 'string' } };
  expect(fieldsOnlyIn(installed, ours())).toEqual([`${installed.spec.versions[0].name}:spec.futureField`]);
});

test('an older schema (ours has more) is applied over', () => {
  const installed = ours();
  const spec = installed.spec.versions[0].schema!.openAPIV3Schema!.properties!.spec;
  delete spec.properties!.backup;
  expect(fieldsOnlyIn(installed, ours())).toEqual([]);
});

test('a version ours does not serve is newer', () => {
  const installed = ours();
  installed.spec.versions.push({ ...installed.spec.versions[0], name: 'v2', storage: false });
  expect(fieldsOnlyIn(installed, ours())).toEqual(['v2:']);
});

test('the typed spec in api/ and the CRD schema name the same fields, section by section', () => {
  const spec = ours().spec.versions[0].schema!.openAPIV3Schema!.properties!.spec;
  const keys = (o: object | undefined) => Object.keys(o ?? {}).sort();
  expect(keys(spec.properties)).toEqual(keys(specFields.spec));
  for (const section of ['pod', 'backup', 'etcd', 'tls', 'networkPolicy', 'auth'] as const)
    expect({ section, fields: keys(spec.properties![section].properties) }).toEqual({
      section,
      fields: keys(specFields[section]),
    });
});

test('backups to S3 and restore into a new cluster are in the schema (issue 19), credentials only by Secret name', () => {
  const spec = ours().spec.versions[0].schema!.openAPIV3Schema!.properties!.spec;
  const s3 = spec.properties!.backup.properties!.s3;
  expect(s3.required).toEqual(['bucket', 'credentialsSecret']);
  expect(Object.keys(s3.properties!).sort()).toEqual(
    ['bucket', 'caSecret', 'credentialsSecret', 'endpoint', 'forcePathStyle', 'prefix', 'region'].sort(),
  );
  expect(spec.properties!.restore.required).toEqual(['cluster']);
  const rules = (spec.x_kubernetes_validations ?? []).map((r) => r.rule);
  expect(rules).toContain('!has(self.restore) || has(self.backup)');
});
