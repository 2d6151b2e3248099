// etcd clients for activities. No client-side retries: a retried MemberAdd that was already applied
// would add a second member (sdk-pitfalls §3.3). Temporal retries the whole, idempotent activity.
import { Etcd3 } from 'etcd3';
import { noop } from 'cockatiel';

export const clientURLOf = (ip: string) => `http://${ip}:2379`;

export async function withEtcd<T>(endpoints: string[], fn: (c: Etcd3) => Promise<T>, timeoutMs = 3000): Promise<T> {
  if (!endpoints.length) throw new Error('no etcd endpoint to talk to');
  const client = new Etcd3({
    hosts: endpoints,
    dialTimeout: timeoutMs,
    faultHandling: { global: noop, host: () => noop },
  });
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

export const deadline = (ms: number) => ({ deadline: new Date(Date.now() + ms) });

/** What a Status response's `errors` holds: every active alarm of the cluster (e.g. "memberID:42 alarm:NOSPACE",
 *  the same list on every member) and, on 3.6, "no leader". Alarms are not ill health: a member with one still serves. */
export function statusProblems(errors: string[] | undefined): {
  alarms: { memberId: string; alarm: string }[];
  other: string[];
} {
  const alarms: { memberId: string; alarm: string }[] = [];
  const other: string[] = [];
  for (const e of errors ?? []) {
    const m = /memberID:\s*(\d+)\s+alarm:\s*(\w+)/.exec(e);
    if (m) alarms.push({ memberId: m[1], alarm: m[2] });
    else other.push(e);
  }
  return { alarms, other };
}
