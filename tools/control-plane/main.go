// Command tether-control-plane runs a real Kubernetes control plane (etcd + kube-apiserver, plus the
// garbage-collector and namespace controllers of kube-controller-manager) on loopback, for Tether's tests
// and demo. It is built from the Go module proxy; nothing is downloaded at run time.
//
// Without a sub-command it is the supervisor: it makes certificates, starts each component as its own child
// process (Kubernetes components keep global state and clash in one process), writes an admin kubeconfig,
// prints "ready <kubeconfig>" once /readyz answers ok, and stops everything on SIGTERM/SIGINT or when its
// standard input closes (so a test process that dies, even by SIGKILL, takes its control plane with it).
//
// The sub-commands etcd, kube-apiserver and kube-controller-manager run one component each; they are what
// the supervisor starts, and can also be called by hand (or through a symlink of that name).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/component-base/cli"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if name == "tether-control-plane" || name == "control-plane" {
		if len(args) > 0 && isComponent(args[0]) {
			name, args = args[0], args[1:]
		}
	}
	switch name {
	case "etcd":
		os.Exit(runEtcd(args))
	case "kube-apiserver":
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-controller-manager":
		cmd := controllermanager.NewControllerManagerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	default:
		if err := runSupervisor(args); err != nil {
			fmt.Fprintf(os.Stderr, "tether-control-plane: %v\n", err)
			os.Exit(1)
		}
	}
}

func isComponent(s string) bool {
	return s == "etcd" || s == "kube-apiserver" || s == "kube-controller-manager"
}
