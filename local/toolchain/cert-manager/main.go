// A cert-manager controller for the local test stack, built from the published module
// github.com/cert-manager/cert-manager (the upstream binary's module, cmd/controller, is not on the Go
// module proxy). It runs the controllers a namespaced CA Issuer needs, the way cmd/controller/app does:
// construct each registered controller, start the shared informers, run. No webhook, no ACME/Vault/Venafi
// (less to compile). Built by local/toolchain/install.sh (cert-manager), pinned in versions.env.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the apiserver to serve")
	namespace := flag.String("namespace", "", "namespace to watch (all when empty)")
	version := flag.Bool("version", false, "print the version and exit")
	logf.InitLogs()
	flag.Parse()
	if *version {
		fmt.Println("kec-cert-manager", util.AppVersion)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, logf.Log, "cert-manager")
	opts := controllerpkg.ContextOptions{Kubeconfig: *kubeconfig, Namespace: *namespace, KubernetesAPIQPS: 50, KubernetesAPIBurst: 100}
	opts.ClusterResourceNamespace = "kube-system"
	opts.CertificateRequestMinimumBackoffDuration = 5 * time.Second
	opts.CertificateRequestMaximumBackoffDuration = time.Minute
	factory, err := controllerpkg.NewContextFactory(ctx, opts)
	if err != nil {
		fail(err)
	}
	var ctrls []controllerpkg.Interface
	for name, construct := range controllerpkg.Known() {
		c, err := construct(factory)
		if err != nil {
			fail(fmt.Errorf("%s: %w", name, err))
		}
		ctrls = append(ctrls, c)
	}
	shared, err := factory.Build()
	if err != nil {
		fail(err)
	}
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.SharedInformerFactory.Start(ctx.Done())
	var wg sync.WaitGroup
	for _, c := range ctrls {
		wg.Add(1)
		go func() { defer wg.Done(); _ = c.Run(2, ctx) }()
	}
	fmt.Fprintln(os.Stderr, "kec-cert-manager: controllers running")
	wg.Wait()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kec-cert-manager:", err)
	os.Exit(1)
}
