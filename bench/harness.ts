// What every bench script does around its measurements: a fresh stack with the controller and a Temporal client,
// all stopped afterwards, and the process's exit code.
import { Client, Connection } from '@temporalio/client';
import { startStackWithController, type TestController } from '../test/support/controller.js';
import type { TestStack } from '../test/support/stack.js';

/** Exits 0 when `main` succeeds, 1 (the error printed) when it fails. */
export function exitWhenDone(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}

/** Runs `bench` against a stack with the controller started for it, then stops them and exits. */
export function benchWithController(
  bench: (s: { t: TestStack; ctl: TestController; temporal: Client }) => Promise<void>,
): void {
  exitWhenDone(async () => {
    const { t, ctl } = await startStackWithController();
    const temporal = new Client({ connection: await Connection.connect({ address: t.stack.temporalAddress }) });
    try {
      await bench({ t, ctl, temporal });
    } finally {
      await temporal.connection.close();
      await ctl.stop();
      await t.stop();
    }
  });
}
