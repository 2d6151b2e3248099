// Config files of one real node (containerd, CNI, kubelet) and of the stack's kube-proxy and CoreDNS.
// Recipe and the reason for each odd setting: shared/notes/real-nodes.md.
import { join } from 'node:path';
import { pauseImage } from '../images/catalog.js';
import type { RealAddresses, RealNodesLayout } from './host.js';

/** Where a containerd keeps its files: a node's (RealNodesLayout) or the throwaway one that builds the image seed. */
export interface ContainerdPaths {
  /** Its folder: state, CNI and registry config. */
  dir: string;
  root: string;
  socket: string;
  /** Its runc root's name under /run/containerd/runc (the stack's namespace's /run). */
  runcRoot: string;
}

export function containerdToml(c: ContainerdPaths): string {
  const d = c.dir;
  return `version = 4
root = "${c.root}"
state = "${d}/containerd/state"
imports = [] # the default reads /etc/containerd/conf.d
disabled_plugins = ["io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[debug]
  level = "warn"
[plugins]
  [plugins.'io.containerd.server.v1.grpc']
    address = "${c.socket}"
  [plugins.'io.containerd.server.v1.ttrpc']
    address = "${c.socket}.ttrpc"
  [plugins.'io.containerd.server.v1.debug']
    address = ""
  [plugins.'io.containerd.server.v1.metrics']
    address = ""
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "${pauseImage}"
    [plugins.'io.containerd.cri.v1.images'.registry]
      # Every registry is 127.0.0.1:9 of the stack's namespace: a missing image fails at once, nothing leaves the host.
      config_path = "${d}/certs.d"
  [plugins.'io.containerd.cri.v1.runtime']
    enable_selinux = false
    # No CAP_SYS_RESOURCE on some hosts (this VM): runc cannot lower oom_score_adj to the kubelet's -998.
    restrict_oom_score_adj = true
    # Pod network namespaces under the state folder, not the host's /run/netns.
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = "/usr/sbin/runc"
          SystemdCgroup = false
          Root = "/run/containerd/runc/${c.runcRoot}"
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["/usr/lib/cni"]
      conf_dir = "${d}/net.d"
      max_conf_num = 1
  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
`;
}

export const registryHosts = 'server = "http://127.0.0.1:9"\n';

export function cniConflist(l: RealNodesLayout, a: RealAddresses, n: number): string {
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: `kec-n${n}`,
      plugins: [
        {
          type: 'bridge',
          bridge: l.bridge(n),
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            dataDir: join(l.nodeDir(n), 'cni-ipam'),
            ranges: [[{ subnet: a.podCIDR(n), gateway: a.nodeIP(n) }]],
            routes: [{ dst: '0.0.0.0/0' }],
          },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  );
}

export function kubeletYaml(l: RealNodesLayout, a: RealAddresses, n: number, caFile: string): string {
  const d = l.nodeDir(n);
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /${l.cgroupRoot(n)}
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
containerRuntimeEndpoint: unix://${l.socket(n)}
imageServiceEndpoint: unix://${l.socket(n)}
address: ${a.nodeIP(n)}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${10238 + 10 * n}
# Callers show a certificate of the stack's CA (the apiserver) or a token; the apiserver says what they may do.
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: ${caFile}}}
authorization: {mode: Webhook}
tlsCertFile: ${d}/pki/kubelet.crt
tlsPrivateKeyFile: ${d}/pki/kubelet.key
clusterDomain: cluster.local
clusterDNS: ["${a.inner}"]
resolvConf: ""
podLogsDir: ${d}/pod-logs
podCIDR: ${a.podCIDR(n)}
registerNode: true
failSwapOn: false
protectKernelDefaults: false
serializeImagePulls: false
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
rotateCertificates: false
serverTLSBootstrap: false
`;
}

export function kubeProxyYaml(a: RealAddresses, kubeconfig: string): string {
  return `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
hostnameOverride: node-1
clientConnection: {kubeconfig: ${kubeconfig}}
clusterCIDR: ${a.cidr}
detectLocalMode: ClusterCIDR
bindAddress: ${a.inner}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
nodePortAddresses: ["${a.inner}/32"]
`;
}

export function corefile(a: RealAddresses, kubeconfig: string): string {
  // No forward: names outside the cluster get no answer from here (no traffic leaves the host).
  return `.:53 {
    bind ${a.inner}
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig ${kubeconfig} local
        pods insecure
        ttl 5
    }
    cache 5
}
`;
}

/** Kernel settings the kubelet insists on (it writes them unless protectKernelDefaults): inside the stack's
 *  mount namespace each /proc/sys file is covered by a file holding the wanted value, so the host's stay. */
export const kubeletSysctls: Record<string, string> = {
  'vm/overcommit_memory': '1',
  'vm/panic_on_oom': '0',
  'kernel/panic': '10',
  'kernel/panic_on_oops': '1',
  'kernel/keys/root_maxkeys': '1000000',
  'kernel/keys/root_maxbytes': '25000000',
};
