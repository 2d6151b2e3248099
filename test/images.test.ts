// The project's images come from deploy/Dockerfile: one target per image, each with its own entry point
// (the backup tool must not start the controller), both running the compiled output that `npm run build` makes
// (local/images builds them; real-nodes.test.ts runs them).
import { dockerfileEntrypoints } from '../local/toolchain.js';

test('deploy/Dockerfile has a controller and a backup-tool target, each running its own compiled entry point', () => {
  const targets = dockerfileEntrypoints();
  expect(targets.controller).toEqual(['node', 'dist/controller/main.js']);
  expect(targets['backup-tool']).toEqual(['node', 'dist/backup-tool/main.js']);
});

test('a target is read from its own stage', () => {
  const text =
    'FROM a AS build\nRUN x\nFROM b AS one\nENTRYPOINT ["node", "dist/one.js"]\nFROM b AS two\nENTRYPOINT ["node", "dist/two.js"]\n';
  expect(dockerfileEntrypoints(text)).toEqual({ one: ['node', 'dist/one.js'], two: ['node', 'dist/two.js'] });
});
