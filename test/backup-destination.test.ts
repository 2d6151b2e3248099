// Pure: the backup tool's destination settings (issue 19). Credentials only by Secret reference, never by value.
import { backupToolEnv } from '../activities/backup.js';
import { s3ConfigFromEnv } from '../backup-tool/s3.js';

const ref = { namespace: 'prod', name: 'main', uid: 'u-1' };

test('the claim stays the default destination: no S3 settings at all', () => {
  const env = backupToolEnv(ref, { maxSnapshot: 3 });
  expect(env.map((e) => e.name)).not.toContain('S3_BUCKET');
  expect(s3ConfigFromEnv(Object.fromEntries(env.map((e) => [e.name, e.value])))).toBeUndefined();
});

test('S3: settings as values, credentials and CA only as secretKeyRef; the tool reads them back', () => {
  const env = backupToolEnv(ref, {
    maxAgeInSecond: 60,
    s3: { endpoint: 'https://s3.example', bucket: 'b-1', prefix: '/team/', credentialsSecret: 'creds', caSecret: 'ca' },
  });
  const by = Object.fromEntries(env.map((e) => [e.name, e]));
  for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'S3_CA']) {
    expect(by[k].value).toBeUndefined();
    expect(by[k].valueFrom?.secretKeyRef?.name).toBe(k === 'S3_CA' ? 'ca' : 'creds');
  }
  expect(by.MAX_AGE_SECONDS.value).toBe('60');
  const cfg = s3ConfigFromEnv({ ...Object.fromEntries(env.map((e) => [e.name, e.value ?? ''])), S3_CA: 'PEM' });
  expect(cfg).toEqual({
    endpoint: 'https://s3.example',
    bucket: 'b-1',
    prefix: 'team',
    region: 'us-east-1',
    forcePathStyle: true,
    ca: 'PEM',
  });
});
