#!/usr/bin/env bash
# Host state a real-node stack could change, as sorted text: diff a listing taken before a run with one
# taken after (`host-state.sh > before; …; host-state.sh > after; diff before after`). Other stacks running at
# the same time (other test files) show as lines naming their own id (kecrv<id>, kecrb<id>N, kecr<id>nN).
echo "## processes (kubelet, containerd, shims, kube-proxy, coredns, node namespace holders)"
ps -eo comm=,args= | grep -E '^(kubelet|containerd|containerd-shim|kube-proxy|coredns|pause|kec-real-nodes)' |
  awk '{print $1}' | sort | uniq -c
echo "## processes in kecr* cgroups"
for h in /sys/fs/cgroup/*/; do ls -d "$h"kecr* 2>/dev/null; done | sort
echo "## network namespaces"
ip netns list 2>/dev/null | awk '{print $1}' | sort
echo "## links (kecr*/veth/bridges)"
ip -o link show | awk -F': ' '{print $2}' | grep -E '^(kecr|cni|veth)' | sort
echo "## routes (main table)"
ip route show | sort

echo "## nft tables"
nft list tables 2>/dev/null | sort
echo "## iptables rules (v4/v6)"
iptables-save 2>/dev/null | grep -v '^#' | sort | md5sum
ip6tables-save 2>/dev/null | grep -v '^#' | sort | md5sum
echo "## sysctls"
sysctl kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom kernel.keys.root_maxkeys \
  kernel.keys.root_maxbytes net.ipv4.ip_forward net.ipv4.conf.all.forwarding net.ipv4.conf.default.forwarding \
  net.bridge.bridge-nf-call-iptables net.ipv4.conf.all.route_localnet net.netfilter.nf_conntrack_max 2>&1 | sort
echo "## mounts (overlay, kubelet, containerd, netns, shm under a tmp folder)"
grep -E 'overlay|kubelet|containerd|/netns/|/tmp/kec' /proc/mounts | wc -l
echo "## host paths real nodes would write without their own namespace"
for p in /var/lib/kubelet /var/log/containers /var/log/pods /run/containerd /var/lib/cni /run/netns/cni-* /var/run/nri \
  /etc/containerd /opt/cni; do [ -e "$p" ] && echo "exists $p"; done
echo "## /etc/hosts lines"
wc -l < /etc/hosts
