// Observations for tests of decisions and workflows (no stack): members, pods and a 3-member cluster that exists.
import type { MemberView, Observation, PodView } from '../../workflows/types.js';

/** Member c-000<i> as etcd lists it: a healthy voter on 3.5.33, c-0000 the leader. */
export const memberView = (i: number, over: Partial<MemberView> = {}): MemberView => ({
  id: String(1000 + i),
  name: `c-000${i}`,
  peerURL: `http://c-000${i}.c.default.svc:2380`,
  podName: `c-000${i}`,
  isLearner: false,
  healthy: true,
  isLeader: i === 0,
  version: '3.5.33',
  ...over,
});

/** Member c-000<i>'s pod: running and ready for a minute. */
export const podView = (i: number, over: Partial<PodView> = {}): PodView => ({
  name: `c-000${i}`,
  phase: 'Running',
  ready: true,
  ip: `10.0.0.${i}`,
  deleting: false,
  image: 'x',
  restarts: 0,
  ageSeconds: 60,
  ...over,
});

/** An EtcdCluster c (size 3, 3.5.33) that exists, with no pods and no etcd until `over` gives them. */
export const observation = (over: Partial<Observation> = {}): Observation => ({
  exists: true,
  deleting: false,
  uid: 'u',
  generation: 1,
  spec: { size: 3, version: '3.5.33', repository: 'quay.io/coreos/etcd' },
  pods: [],
  etcd: null,
  highestIndex: 2,
  observedAt: '',
  ...over,
});
