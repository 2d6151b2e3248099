// The etcd layer of the activities: clients, one member's Status, the health rule. No client-side retries: a retried MemberAdd that was already applied
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

export type EtcdStatus = Awaited<ReturnType<Etcd3['maintenance']['status']>>;

/** One member's Status, asked on its own endpoint (never through another member, which would answer for itself). */
export const memberStatus = (url: string, timeoutMs = 2000): Promise<EtcdStatus> =>
  withEtcd([url], (c) => c.maintenance.status(deadline(timeoutMs)), timeoutMs);

/** The health rule, its one home: a member that answers its own Status and knows a leader serves (reads at
 *  least). Alarms are reported apart and never make it unhealthy: NOSPACE is cluster-wide and would read as
 *  quorum loss. Other errors are reported, not judged. */
export function healthOf(s: EtcdStatus): {
  healthy: boolean;
  leaderKnown: boolean;
  isLeader: boolean;
  alarms: { memberId: string; alarm: string }[];
  error?: string;
} {
  const leaderKnown = s.leader !== '0';
  const { alarms, other } = statusProblems(s.errors);
  return {
    healthy: leaderKnown,
    leaderKnown,
    isLeader: leaderKnown && s.leader === s.header.member_id,
    alarms,
    error: !leaderKnown ? 'no leader' : other.join('; ') || undefined,
  };
}

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

/** Asks again after a failure: `attempt(i)` for i = 0, 1, … up to `tries` times while `again(error)` holds, with
 *  `pause(error)` between; then the last error. For what is worth a second ask: a member slow to answer on a loaded node,
 *  or etcd's reconfiguration rule refusing a change for a few seconds. */
export async function retry<T>(
  attempt: (i: number) => Promise<T>,
  opts: { tries: number; again?: (e: unknown) => boolean; pause?: (e: unknown) => Promise<void> },
): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await attempt(i);
    } catch (e) {
      if (i + 1 >= opts.tries || (opts.again && !opts.again(e))) throw e;
      await opts.pause?.(e);
    }
  }
}
