// Activity stubs with the timeouts and retry rules of each kind of step.
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';

const retry = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s' };

/** Quick reads and writes against the API server or etcd; retried until they succeed. */
export const act = proxyActivities<Activities>({ startToCloseTimeout: '1m', heartbeatTimeout: '10s', retry });

/** Steps that wait for a process to start, a learner to catch up, a pod to go away. */
export const waitFor = proxyActivities<Activities>({ startToCloseTimeout: '10m', heartbeatTimeout: '10s', retry });

/** Health gates: retried for about two minutes, then the operation fails with the reason. */
export const gate = proxyActivities<Activities>({ startToCloseTimeout: '30s', heartbeatTimeout: '10s', retry: { ...retry, maximumAttempts: 15 } });

/** A member restarting on a new version: bounded across retries, then the upgrade stops and says why. */
export const upgradeWait = proxyActivities<Activities>({ scheduleToCloseTimeout: '4m', heartbeatTimeout: '10s', retry });
