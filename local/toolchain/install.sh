#!/usr/bin/env bash
# Builds (or reuses) every binary the local stack needs into a versioned cache outside the repo.
# Idempotent: a component whose directory holds binaries that answer --version is skipped.
#   KEC_TOOLS_DIR  cache root (default ~/.cache/kube-etcd-controller/tools)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
TOOLS=${KEC_TOOLS_DIR:-$HOME/.cache/kube-etcd-controller/tools}
LOGS="$TOOLS/logs"
mkdir -p "$TOOLS" "$LOGS"

export GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

say() { printf '[toolchain %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { say "FAILED: $1 (log: $2)"; tail -n 20 "$2" 2>/dev/null | sed 's/^/    /'; exit 1; }

need_go() {
  command -v go >/dev/null 2>&1 || { say "Go is not installed: install Go >= 1.26 (https://go.dev/dl) and re-run."; exit 1; }
}

# run_timed <component> <log> <cmd...>: runs a build step, printing a progress line every 60 s.
run_timed() {
  local name=$1 log=$2; shift 2
  local start=$SECONDS
  ( "$@" ) >>"$log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    if (( (SECONDS - start) % 60 < 5 && SECONDS - start >= 60 )); then
      say "$name: still building ($(( SECONDS - start ))s)"
    fi
  done
  wait "$pid" || fail "$name" "$log"
  say "$name: done in $(( SECONDS - start ))s"
}

check_bins() { # check_bins <dir> <bin...>: every binary exists and answers --version
  local dir=$1; shift
  for b in "$@"; do
    [ -x "$dir/$b" ] || return 1
    "$dir/$b" --version >/dev/null 2>&1 || "$dir/$b" version --client >/dev/null 2>&1 || "$dir/$b" version >/dev/null 2>&1 || return 1
  done
}

k8s_ldflags() { # k8s_ldflags <version>: the version stamps `kubectl version` and the components report
  local v=$1 minor ldf="-s -w" p
  minor=$(echo "$v" | cut -d. -f2)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X $p.gitVersion=v$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=2026-01-01T00:00:00Z"
  done
  echo "$ldf"
}
k8s_tags=selinux,notest,grpcnotrace

# build_k8s <version> [nodes]: the control plane; with `nodes` (pinned version only) also kubelet and
# kube-proxy, in the same `go build`, so the ~1700 packages they share with the control plane compile once.
build_k8s() {
  local v=$1 minor out wrap log cmds nodes=${2:-}
  minor=$(echo "$v" | cut -d. -f2)
  out="$TOOLS/k8s-v$v"; wrap="$TOOLS/src/k8s-v$v"; log="$LOGS/k8s-v$v.log"
  if check_bins "$out" kube-apiserver kube-controller-manager kube-scheduler kubectl; then
    say "kubernetes v$v: cached in $out"
    [ -z "$nodes" ] || build_k8s_node
    return 0
  fi
  need_go
  cmds="kube-apiserver kube-controller-manager kube-scheduler kubectl"
  if [ -n "$nodes" ] && [ "$v" = "$K8S_VERSION" ] && ! check_bins "$TOOLS/k8s-node-v$v" kubelet kube-proxy; then
    cmds="$cmds kubelet kube-proxy"
  fi
  say "kubernetes v$v: building $cmds (cold: 15-30 min)"
  mkdir -p "$wrap" "$out"; : >"$log"
  local staging="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
    cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
    cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice externaljwt
    kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
    mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller streaming"
  {
    printf 'module local/k8s-bins\n\ngo 1.26.0\n\ngodebug default=go1.26\n\nrequire k8s.io/kubernetes v%s\n\n' "$v"
    printf 'tool (\n\tk8s.io/kubernetes/cmd/kube-apiserver\n\tk8s.io/kubernetes/cmd/kube-controller-manager\n\tk8s.io/kubernetes/cmd/kube-scheduler\n\tk8s.io/kubernetes/cmd/kubectl\n)\n\nreplace (\n'
    for m in $staging; do printf '\tk8s.io/%s => k8s.io/%s v0.%s.%s\n' "$m" "$m" "$minor" "${v##*.}"; done
    printf ')\n'
  } >"$wrap/go.mod"
  run_timed "kubernetes v$v (go mod tidy)" "$log" bash -c "cd '$wrap' && go mod tidy"
  run_timed "kubernetes v$v (go build)" "$log" bash -c "cd '$wrap' && go build -trimpath -tags $k8s_tags \
      -ldflags '$(k8s_ldflags "$v")' -o '$out/' $(printf ' k8s.io/kubernetes/cmd/%s' $cmds)"
  if [ -x "$out/kubelet" ]; then
    mkdir -p "$TOOLS/k8s-node-v$v" && mv -f "$out/kubelet" "$out/kube-proxy" "$TOOLS/k8s-node-v$v/"
  fi
  check_bins "$out" kube-apiserver kube-controller-manager kube-scheduler kubectl || fail "kubernetes v$v (--version check)" "$log"
  say "kubernetes v$v: $("$out/kube-apiserver" --version)"
  [ -z "$nodes" ] || build_k8s_node
}

# build_go_tool <label> <out dir> <binary> <cold time> <ldflags> <module@version>: one `go install` into the cache.
build_go_tool() {
  local label=$1 out=$2 bin=$3 cold=$4 ldf=$5 pkg=$6 log="$LOGS/$(basename "$2").log"
  if check_bins "$out" "$bin"; then say "$label: cached in $out"; return 0; fi
  need_go
  say "$label: building (cold: $cold)"
  mkdir -p "$out"; : >"$log"
  run_timed "$label" "$log" env GOBIN="$out" go install -trimpath -ldflags "$ldf" "$pkg"
  check_bins "$out" "$bin" || fail "$label (--version check)" "$log"
  say "$label: $("$out/$bin" --version | head -1)"
}

build_temporal() {
  local v=$TEMPORAL_CLI_VERSION
  build_go_tool "temporal cli $v" "$TOOLS/temporal-$v" temporal "6-12 min" \
    "-s -w -X github.com/temporalio/cli/temporalcli.Version=$v" "github.com/temporalio/cli/cmd/temporal@v$v"
}

# versitygw (Apache-2.0, one ~45 MB static binary, plain `go install`: its go.mod has no replace): the
# S3 server of the local stack, serving a directory. Measured: ~3.5 min cold on 2 cores.
build_versitygw() {
  local v=$VERSITYGW_VERSION
  build_go_tool "versitygw v$v" "$TOOLS/versitygw-v$v" versitygw "3-4 min" "-s -w -X main.Version=v$v" \
    "github.com/versity/versitygw/cmd/versitygw@v$v"
}

build_etcd() {
  local v=$1 out="$TOOLS/etcd-v$1" wrap="$TOOLS/src/etcd-v$1" log="$LOGS/etcd-v$1.log"
  if check_bins "$out" etcd etcdctl etcdutl; then say "etcd v$v: cached in $out"; return 0; fi
  need_go
  say "etcd v$v: building etcd, etcdctl, etcdutl (cold: 2-4 min)"
  mkdir -p "$wrap" "$out"; : >"$log"
  cat >"$wrap/go.mod" <<GOMOD
module local/etcd-$v

go 1.26.0

require (
	go.etcd.io/etcd/server/v3 v$v
	go.etcd.io/etcd/etcdctl/v3 v$v
	go.etcd.io/etcd/etcdutl/v3 v$v
)

tool (
	go.etcd.io/etcd/server/v3
	go.etcd.io/etcd/etcdctl/v3
	go.etcd.io/etcd/etcdutl/v3
)
GOMOD
  local ldf="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=v$v"
  run_timed "etcd v$v (go mod tidy)" "$log" bash -c "cd '$wrap' && go mod tidy"
  run_timed "etcd v$v (go build)" "$log" bash -c "cd '$wrap' && go build -trimpath -ldflags '$ldf' -o '$out/etcd' go.etcd.io/etcd/server/v3 \
    && go build -trimpath -ldflags '$ldf' -o '$out/etcdctl' go.etcd.io/etcd/etcdctl/v3 \
    && go build -trimpath -ldflags '$ldf' -o '$out/etcdutl' go.etcd.io/etcd/etcdutl/v3"
  check_bins "$out" etcd etcdctl etcdutl || fail "etcd v$v (--version check)" "$log"
  say "etcd v$v: $("$out/etcd" --version | head -1)"
}

fetch_etcd34() {
  local v=$ETCD34_VERSION out="$TOOLS/etcd-v$ETCD34_VERSION" log="$LOGS/etcd-v$ETCD34_VERSION.log"
  if check_bins "$out" etcd etcdctl; then say "etcd v$v (debian): cached in $out"; return 0; fi
  command -v apt-get >/dev/null 2>&1 || { say "apt-get not found: etcd $v comes from Debian packages (etcd-server, etcd-client $ETCD34_DEBIAN_VERSION)."; exit 1; }
  say "etcd v$v: extracting Debian packages etcd-server/etcd-client $ETCD34_DEBIAN_VERSION"
  local dl="$TOOLS/src/etcd-deb"; mkdir -p "$dl" "$out"; : >"$log"
  get_debs() {
    cd "$dl" && apt-get download "etcd-server=$ETCD34_DEBIAN_VERSION" "etcd-client=$ETCD34_DEBIAN_VERSION"
  }
  if ! get_debs >>"$log" 2>&1; then
    say "etcd v$v: package lists look stale, running apt-get update once"
    apt-get update >>"$log" 2>&1 || fail "etcd v$v (apt-get update)" "$log"
    get_debs >>"$log" 2>&1 || fail "etcd v$v (apt-get download)" "$log"
  fi
  local x="$dl/x"; rm -rf "$x"; mkdir -p "$x"
  for d in "$dl"/etcd-server_*.deb "$dl"/etcd-client_*.deb; do dpkg-deb -x "$d" "$x"; done
  cp "$x/usr/bin/etcd" "$x/usr/bin/etcdctl" "$out/"
  check_bins "$out" etcd etcdctl || fail "etcd v$v (--version check)" "$log"
  say "etcd v$v: $("$out/etcd" --version | head -1)"
}

# Headless Chromium for the Temporal UI test: Debian's package (nothing downloads a browser at run time).
install_chromium() {
  command -v chromium >/dev/null 2>&1 && return 0
  local log="$LOGS/chromium.log"
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "chromium missing: install Debian's chromium package (apt-get install chromium) for the Temporal UI test"; return 0
  fi
  say "chromium: installing Debian's package"
  { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium \
    || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }; } >>"$log" 2>&1 \
    || fail "chromium (apt-get install)" "$log"
  say "chromium: $(chromium --version 2>/dev/null | head -1)"
}

# cert-manager (issue 18, spec.tls.issuerRef): its controller binary's module (cmd/controller) is not on the
# Go module proxy, so a main of our own (local/toolchain/cert-manager/main.go) runs the published module's
# registered controllers — only those a CA Issuer needs. CRDs come from the module's deploy/crds.
build_cert_manager() {
  local v=$CERT_MANAGER_VERSION out="$TOOLS/cert-manager-v$CERT_MANAGER_VERSION" wrap="$TOOLS/src/cert-manager-v$CERT_MANAGER_VERSION"
  local log="$LOGS/cert-manager-v$CERT_MANAGER_VERSION.log" mod
  if check_bins "$out" cert-manager && [ -f "$out/crds/cert-manager.io_certificates.yaml" ]; then say "cert-manager v$v: cached in $out"; return 0; fi
  need_go
  say "cert-manager v$v: building the controller (CA issuer only) (cold: 4-10 min)"
  mkdir -p "$wrap" "$out/crds"; : >"$log"
  printf 'module local/cert-manager\n\ngo 1.26.0\n\nrequire github.com/cert-manager/cert-manager v%s\n' "$v" >"$wrap/go.mod"
  cp "$here/cert-manager/main.go" "$wrap/main.go"
  run_timed "cert-manager v$v (go mod tidy)" "$log" bash -c "cd '$wrap' && go mod tidy"
  run_timed "cert-manager v$v (go build)" "$log" bash -c "cd '$wrap' && go build -trimpath \
      -ldflags '-s -w -X github.com/cert-manager/cert-manager/pkg/util.AppVersion=v$v' -o '$out/cert-manager' ."
  mod=$(cd "$wrap" && go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)
  cp "$mod"/deploy/crds/cert-manager.io_*.yaml "$out/crds/" && chmod u+w "$out"/crds/*.yaml
  check_bins "$out" cert-manager || fail "cert-manager v$v (--version check)" "$log"
  say "cert-manager: $("$out/cert-manager" --version)"
}

# --- Real nodes (issue 15): kubelet + kube-proxy, containerd, CoreDNS; runc and CNI plugins from Debian.

# kubelet + kube-proxy when the control plane is already built: in the control plane's wrapper module (no
# module of its own, so the shared packages come from the build cache; only ~150 node packages compile).
build_k8s_node() {
  local v=$K8S_VERSION out="$TOOLS/k8s-node-v$K8S_VERSION" wrap="$TOOLS/src/k8s-v$K8S_VERSION"
  local log="$LOGS/k8s-node-v$K8S_VERSION.log"
  if check_bins "$out" kubelet kube-proxy; then say "kubelet, kube-proxy v$v: cached in $out"; return 0; fi
  need_go
  [ -f "$wrap/go.mod" ] || { say "kubelet v$v needs the control plane's module in $wrap: run install.sh k8s"; exit 1; }
  say "kubelet, kube-proxy v$v: building (cold, after the control plane: 3-6 min)"
  mkdir -p "$out"; : >"$log"
  run_timed "kubelet, kube-proxy v$v (go build)" "$log" bash -c "cd '$wrap' && go build -trimpath -tags $k8s_tags \
      -ldflags '$(k8s_ldflags "$v")' -o '$out/' k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy"
  check_bins "$out" kubelet kube-proxy || fail "kubelet v$v (--version check)" "$log"
  say "kubelet: $("$out/kubelet" --version)"
}

build_containerd() {
  local v=$CONTAINERD_VERSION out="$TOOLS/containerd-v$CONTAINERD_VERSION" log="$LOGS/containerd-v$CONTAINERD_VERSION.log"
  if check_bins "$out" containerd ctr && [ -x "$out/containerd-shim-runc-v2" ]; then say "containerd v$v: cached in $out"; return 0; fi
  need_go
  say "containerd v$v: building containerd, ctr, containerd-shim-runc-v2 (cold: 3-7 min)"
  mkdir -p "$out"; : >"$log"
  local ldf="-s -w -X github.com/containerd/containerd/v2/version.Version=v$v -X github.com/containerd/containerd/v2/version.Revision=goproxy"
  # Without the snapshotters and tracing exporters configs.ts disables anyway (less to compile).
  run_timed "containerd v$v" "$log" env GOBIN="$out" go install -trimpath \
    -tags "urfave_cli_no_docs no_btrfs no_devmapper no_zfs no_tracing" -ldflags "$ldf" \
    "github.com/containerd/containerd/v2/cmd/containerd@v$v" "github.com/containerd/containerd/v2/cmd/ctr@v$v"
  run_timed "containerd-shim-runc-v2 v$v" "$log" env GOBIN="$out" go install -trimpath -tags "urfave_cli_no_docs no_grpc" \
    -ldflags "$ldf" "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@v$v"
  check_bins "$out" containerd ctr || fail "containerd v$v (--version check)" "$log"
  say "containerd: $("$out/containerd" --version)"
}

# CoreDNS with only the plugins local/real-nodes/configs.ts's Corefile uses: a main of our own over coremain
# (CoreDNS's documented way to choose plugins at build time). The full build compiles every cloud SDK.
build_coredns() {
  local v=$COREDNS_VERSION out="$TOOLS/coredns-v$COREDNS_VERSION" wrap="$TOOLS/src/coredns-v$COREDNS_VERSION"
  local log="$LOGS/coredns-v$COREDNS_VERSION.log" p plugins="bind errors health ready kubernetes cache"
  if check_bins "$out" coredns; then say "coredns v$v: cached in $out"; return 0; fi
  need_go
  say "coredns v$v: building with plugins $plugins (cold: 2-4 min)"
  mkdir -p "$wrap" "$out"; : >"$log"
  printf 'module local/coredns\n\ngo 1.26.0\n\nrequire github.com/coredns/coredns v%s\n' "$v" >"$wrap/go.mod"
  {
    printf 'package main\n\nimport (\n\t"github.com/coredns/coredns/coremain"\n'
    for p in $plugins; do printf '\t_ "github.com/coredns/coredns/plugin/%s"\n' "$p"; done
    printf ')\n\nfunc main() { coremain.Run() }\n'
  } >"$wrap/main.go"
  run_timed "coredns v$v (go mod tidy)" "$log" bash -c "cd '$wrap' && go mod tidy"
  run_timed "coredns v$v (go build)" "$log" bash -c "cd '$wrap' && go build -trimpath -ldflags '-s -w' -o '$out/coredns' ."
  check_bins "$out" coredns || fail "coredns v$v (--version check)" "$log"
  say "coredns: $("$out/coredns" -version | head -1)"
}

# rancher local-path-provisioner (Apache-2.0): the real nodes' volume provisioner, run out of cluster by
# local/real-nodes/nodes.ts. Plain `go install` (its go.mod has no replace). Its own client-go, so nothing
# is shared with the k8s build cache: ~170 CPU-s cold.
build_local_path_provisioner() {
  local v=$LOCAL_PATH_PROVISIONER_VERSION
  build_go_tool "local-path-provisioner v$v" "$TOOLS/local-path-provisioner-v$v" local-path-provisioner "2-5 min" \
    "-s -w -X main.VERSION=v$v" "github.com/rancher/local-path-provisioner@v$v"
}

# runc, the CNI plugins and the packet-filter tools kubelet, kube-proxy and the CNI plugins call.
install_node_packages() {
  local log="$LOGS/node-packages.log" pkgs="runc containernetworking-plugins iptables nftables conntrack socat ethtool"
  if command -v runc >/dev/null && [ -x /usr/lib/cni/bridge ] && command -v nft >/dev/null && command -v iptables >/dev/null \
    && command -v conntrack >/dev/null; then say "node packages: installed"; return 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "node packages missing: install Debian's $pkgs"; exit 1
  fi
  say "node packages: installing Debian's $pkgs"
  { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs \
    || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs; }; } >>"$log" 2>&1 \
    || fail "node packages (apt-get install)" "$log"
  say "node packages: runc $(runc --version | head -1 | cut -d' ' -f3), CNI plugins in /usr/lib/cni"
}

# The images real nodes run (pause, busybox, etcd per version) into $TOOLS/images; the project's own are
# `npm run images -- controller backup-tool`, imported once built (KEC_REAL_PROJECT_IMAGES=0: not). Needs npm ci first.
build_images() {
  local log="$LOGS/images.log" start=$SECONDS
  [ -x "$here/../../node_modules/.bin/tsx" ] || { say "images: run npm ci first (the image builder is TypeScript)"; exit 1; }
  ( cd "$here/../.." && KEC_TOOLS_DIR="$TOOLS" node_modules/.bin/tsx local/images/build.ts --catalog ) >"$log" 2>&1 || fail "images" "$log"
  say "images: pause, busybox, etcd ready in $(( SECONDS - start ))s"
}

# Everything a real node needs; containerd and CoreDNS build beside Kubernetes.
real_nodes() {
  install_node_packages
  ( build_containerd; build_coredns; build_local_path_provisioner ) &
  local others=$! k8s_ok=0
  build_k8s "$K8S_VERSION" nodes || k8s_ok=1
  wait "$others" || { say "FAILED: see the component named above"; exit 1; }
  [ $k8s_ok = 0 ] || exit 1
  build_images
}

start=$SECONDS
say "cache: $TOOLS"
what=${1:-all}
case "$what" in
  k8s) build_k8s "$K8S_VERSION" || build_k8s "$K8S_FALLBACK_VERSION" ;;
  temporal) build_temporal ;;
  s3) build_versitygw ;;
  cert-manager) build_cert_manager ;;
  etcd) fetch_etcd34; build_etcd "$ETCD35_VERSION"; build_etcd "$ETCD36_VERSION" ;;
  chromium) install_chromium ;;
  real-nodes) real_nodes ;;
  local-path-provisioner) build_local_path_provisioner ;;
  all)
    # The k8s build (with kubelet and kube-proxy) dominates; the rest runs beside it in two chains so
    # downloads and links overlap with compiling.
    install_node_packages
    ( fetch_etcd34; install_chromium; build_etcd "$ETCD36_VERSION"; build_etcd "$ETCD35_VERSION"; build_temporal; build_versitygw; build_cert_manager ) &
    others=$!
    ( build_containerd; build_coredns; build_local_path_provisioner ) &
    nodes=$!
    k8s_ok=0; build_k8s "$K8S_VERSION" nodes || k8s_ok=1
    wait "$others" || { say "FAILED: see the component named above"; exit 1; }
    wait "$nodes" || { say "FAILED: see the component named above"; exit 1; }
    [ $k8s_ok = 0 ] || exit 1
    build_images # after the etcd builds: the etcd images hold them
    ;;
  *) echo "usage: install.sh [all|k8s|temporal|s3|cert-manager|etcd|chromium|real-nodes|local-path-provisioner]"; exit 2 ;;
esac
say "toolchain ready in $(( SECONDS - start ))s ($(du -sh "$TOOLS" 2>/dev/null | cut -f1) in $TOOLS)"
