// The project's images come from deploy/Dockerfile: one target per image, each with its own entry point
// (the backup tool must not start the controller), both running the compiled output that `npm run build` makes.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { resolveImage } from '../local/node-agent/images.js';
import { dockerfileEntrypoints, ensureBuilt, repoRoot } from '../local/toolchain.js';

test('deploy/Dockerfile has a controller and a backup-tool target, each running its own compiled entry point', () => {
  const targets = dockerfileEntrypoints();
  expect(targets.controller).toEqual(['node', 'dist/controller/main.js']);
  expect(targets['backup-tool']).toEqual(['node', 'dist/backup-tool/main.js']);
});

test('the local stack runs those entry points from the build, for any tag', () => {
  ensureBuilt();
  for (const [image, file] of [
    ['kube-etcd-controller/controller:dev', 'dist/controller/main.js'],
    ['kube-etcd-controller/backup-tool:v0.1.0', 'dist/backup-tool/main.js'],
  ]) {
    const resolved = resolveImage(image);
    expect(resolved?.entrypoint).toEqual([process.execPath, join(repoRoot, file)]);
    expect(existsSync(join(repoRoot, file))).toBe(true);
  }
  expect(resolveImage('kube-etcd-controller/no-such-target:dev')).toBeUndefined();
});

test('a target is read from its own stage', () => {
  const text =
    'FROM a AS build\nRUN x\nFROM b AS one\nENTRYPOINT ["node", "dist/one.js"]\nFROM b AS two\nENTRYPOINT ["node", "dist/two.js"]\n';
  expect(dockerfileEntrypoints(text)).toEqual({ one: ['node', 'dist/one.js'], two: ['node', 'dist/two.js'] });
});
