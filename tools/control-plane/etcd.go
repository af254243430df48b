package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// runEtcd starts an embedded single-member etcd tuned for tests (no fsync). It accepts the flags that
// controller-runtime's envtest passes to etcd, so the binary can stand in for etcd there too.
func runEtcd(args []string) int {
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "directory for etcd data (required)")
	listenClient := fs.String("listen-client-urls", "http://127.0.0.1:2379", "client URL to listen on")
	advertiseClient := fs.String("advertise-client-urls", "", "client URL to advertise (default: the listen URL)")
	listenPeer := fs.String("listen-peer-urls", "http://127.0.0.1:2380", "peer URL to listen on")
	noFsync := fs.Bool("unsafe-no-fsync", true, "skip fsync: fast, and fine for throw-away test data")
	logLevel := fs.String("log-level", "error", "etcd log level")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "etcd: --data-dir is required")
		return 2
	}
	if *advertiseClient == "" {
		*advertiseClient = *listenClient
	}
	parse := func(flagName, s string) []url.URL {
		var out []url.URL
		for _, part := range strings.Split(s, ",") {
			u, err := url.Parse(part)
			if err != nil {
				fmt.Fprintf(os.Stderr, "etcd: --%s: %v\n", flagName, err)
				os.Exit(2)
			}
			out = append(out, *u)
		}
		return out
	}

	cfg := embed.NewConfig()
	cfg.Name = "tether"
	cfg.Dir = *dataDir
	cfg.ListenClientUrls = parse("listen-client-urls", *listenClient)
	cfg.AdvertiseClientUrls = parse("advertise-client-urls", *advertiseClient)
	cfg.ListenPeerUrls = parse("listen-peer-urls", *listenPeer)
	cfg.AdvertisePeerUrls = cfg.ListenPeerUrls
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = *noFsync
	cfg.LogLevel = *logLevel

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: start: %v\n", err)
		return 1
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		fmt.Fprintln(os.Stderr, "etcd: not ready after 60s")
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-e.Err():
		fmt.Fprintf(os.Stderr, "etcd: %v\n", err)
		return 1
	case <-sig:
		return 0
	}
}
