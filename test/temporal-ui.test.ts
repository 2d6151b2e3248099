// The Temporal Web UI, in a real headless Chromium: after a resize, an operator finds that
// operation by its search attributes and reads its steps.
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { chromium, type Browser, type Page } from 'playwright-core';
import { clusters, converged, startStackWithController, type TestController } from './support/controller.js';
import { eventually, type TestStack } from './support/stack.js';
import { apiVersion, kind } from '../api/etcdcluster.js';

const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
let t: TestStack;
let ctl: TestController;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(chromiumPath))
    throw new Error(
      `${chromiumPath} not found: install Debian's chromium (npm run toolchain does) or set CHROMIUM_PATH`,
    );
  ({ t, ctl } = await startStackWithController({}, { ui: true }));
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
});
afterAll(async () => {
  await browser?.close();
  await ctl?.stop();
  await t?.stop();
});

/** On failure, what the page showed: a screenshot and its text, next to the stack's logs. */
async function explained<T>(page: Page, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    // Outside the stack's folder, which is removed when the stack stops.
    const dir = mkdtempSync(join(tmpdir(), 'kec-ui-failure-'));
    await page.screenshot({ path: join(dir, `ui-${what}.png`), fullPage: true }).catch(() => undefined);
    const text = await page.innerText('body').catch(() => '');
    writeFileSync(join(dir, `ui-${what}.txt`), text);
    throw new Error(
      `Temporal UI: ${what}: ${(e as Error).message.split('\n')[0]} at ${page.url()} (saved in ${dir}); the page said: ${text.replace(/\s+/g, ' ').slice(0, 1500)}`,
      { cause: e },
    );
  }
}

test('after a resize, the UI lists the operation by its search attributes and shows its steps', async () => {
  await clusters(t).create({
    apiVersion,
    kind,
    metadata: { name: 'ui-demo' },
    spec: { size: 3, tls: { enabled: false } },
  });
  await converged(t, 'ui-demo', 3);
  await clusters(t).patchSpec('ui-demo', { size: 4 });
  await converged(t, 'ui-demo', 4);
  const workflowId = 'default/ui-demo/resize-3-to-4';

  // The list, filtered as an operator would: this cluster's scale-ups. First through the API, so the
  // page is not loaded before the visibility store has the run.
  const query = 'EtcdCluster="ui-demo" AND EtcdOperation="scale-up"';
  const connection = await Connection.connect({ address: t.stack.temporalAddress });
  try {
    const client = new Client({ connection });
    await eventually(
      'the resize in the visibility store',
      async () => {
        for await (const w of client.workflow.list({ query })) if (w.workflowId === workflowId) return true;
        return false;
      },
      60000,
      1000,
    );
  } finally {
    await connection.close();
  }
  const page = await browser.newPage();
  const url = `${t.stack.uiUrl}/namespaces/default/workflows?query=${encodeURIComponent(query)}`;
  await explained(page, 'list', async () => {
    await eventually(
      'the resize listed in the UI',
      async () => {
        await page.goto(url);
        await page.getByText(workflowId, { exact: true }).first().waitFor({ timeout: 15000 });
        return true;
      },
      90000,
      1000,
    );
    const body = await page.innerText('body');
    expect(body).toContain('resizeCluster');
    // The filter works: neither the create operation nor the cluster's own workflow is listed.
    expect(body).not.toContain('default/ui-demo/create');
  });

  // The operation's page: its steps, as the runbook names them.
  await explained(page, 'history', async () => {
    await page.getByText(workflowId, { exact: true }).first().click();
    await page.waitForURL(/\/workflows\/.+\/.+/, { timeout: 30000 });
    for (const step of ['createJoiningPod', 'addLearner', 'waitLearnerCaughtUp', 'promoteLearner']) {
      await page.getByText(step).first().waitFor({ timeout: 30000 });
    }
    expect(await page.innerText('body')).toMatch(/Completed/i);
  });
  await page.close();
});
