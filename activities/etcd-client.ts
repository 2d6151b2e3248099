// etcd clients for activities. No client-side retries: a retried MemberAdd that was already applied
// would add a second member (sdk-pitfalls §3.3). Temporal retries the whole, idempotent activity.
import { Etcd3 } from 'etcd3';
import { noop } from 'cockatiel';

export const clientURLOf = (ip: string) => `http://${ip}:2379`;

export async function withEtcd<T>(endpoints: string[], fn: (c: Etcd3) => Promise<T>, timeoutMs = 3000): Promise<T> {
  if (!endpoints.length) throw new Error('no etcd endpoint to talk to');
  const client = new Etcd3({ hosts: endpoints, dialTimeout: timeoutMs, faultHandling: { global: noop, host: () => noop } });
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

export const deadline = (ms: number) => ({ deadline: new Date(Date.now() + ms) });
