// The Temporal Web UI, in a real headless Chromium: after a resize, an operator finds that
// operation by its search attributes and reads its steps.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { clusters, converged, startStackWithController, type TestController } from './support/controller.js';
import type { TestStack } from './support/stack.js';

const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
let t: TestStack;
let ctl: TestController;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(chromiumPath)) throw new Error(`${chromiumPath} not found: install Debian's chromium (npm run toolchain does) or set CHROMIUM_PATH`);
  ({ t, ctl } = await startStackWithController({}, { ui: true }));
  browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
});
afterAll(async () => { await browser?.close(); await ctl?.stop(); await t?.stop(); });

/** On failure, what the page showed: a screenshot and its text, next to the stack's logs. */
async function explained<T>(page: Page, what: string, fn: () => Promise<T>): Promise<T> {
  try { return await fn(); } catch (e) {
    await page.screenshot({ path: join(t.stack.logsDir, `ui-${what}.png`), fullPage: true }).catch(() => undefined);
    writeFileSync(join(t.stack.logsDir, `ui-${what}.txt`), await page.innerText('body').catch(() => ''));
    throw new Error(`Temporal UI: ${what}: ${(e as Error).message.split('\n')[0]} (page saved in ${t.stack.logsDir})`);
  }
}

test('after a resize, the UI lists the operation by its search attributes and shows its steps', async () => {
  await clusters(t).create({ apiVersion: 'coreos.com/v1', kind: 'EtcdCluster', metadata: { name: 'ui-demo' }, spec: { size: 3 } });
  await converged(t, 'ui-demo', 3);
  await clusters(t).patchSpec('ui-demo', { size: 4 });
  await converged(t, 'ui-demo', 4);
  const workflowId = 'default/ui-demo/resize-3-to-4';

  const page = await browser.newPage();
  // The list, filtered as an operator would: this cluster's scale-ups.
  const query = 'EtcdCluster="ui-demo" AND EtcdOperation="scale-up"';
  await page.goto(`${t.stack.uiUrl}/namespaces/default/workflows?query=${encodeURIComponent(query)}`);
  await explained(page, 'list', async () => {
    await page.getByText(workflowId, { exact: true }).first().waitFor({ timeout: 60000 });
    const body = await page.innerText('body');
    expect(body).toContain('resizeCluster');
    // The filter works: neither the create operation nor the cluster's own workflow is listed.
    expect(body).not.toContain('default/ui-demo/create');
  });

  // The operation's page: its steps, as the runbook names them.
  await explained(page, 'history', async () => {
    await page.getByText(workflowId, { exact: true }).first().click();
    await page.waitForURL(/\/workflows\/.+\/.+/, { timeout: 30000 });
    for (const step of ['addLearner', 'createMemberPod', 'waitLearnerCaughtUp', 'promoteLearner']) {
      await page.getByText(step).first().waitFor({ timeout: 30000 });
    }
    expect(await page.innerText('body')).toMatch(/Completed/i);
  });
  await page.close();
});
