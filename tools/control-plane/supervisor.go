package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

type supervisor struct {
	dataDir  string
	self     string
	mu       sync.Mutex
	children []*exec.Cmd
	exited   chan string
}

func runSupervisor(args []string) error {
	fs := flag.NewFlagSet("tether-control-plane", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: tether-control-plane --data-dir DIR [flags]

Runs etcd, kube-apiserver and (unless --no-controller-manager) the garbage-collector and namespace
controllers of kube-controller-manager on free loopback ports. Writes DIR/kubeconfig (admin, system:masters)
and prints "ready DIR/kubeconfig" when /readyz answers ok. Component logs go to DIR/logs/. Stops on
SIGTERM/SIGINT, or when standard input closes if --exit-on-stdin-close is given.

Sub-commands (for use by the supervisor or by hand): etcd, kube-apiserver, kube-controller-manager.

Flags:
`)
		fs.PrintDefaults()
	}
	dataDir := fs.String("data-dir", "", "directory for certificates, etcd data, logs and the kubeconfig (required)")
	apiPort := fs.Int("apiserver-port", 0, "kube-apiserver secure port (0: a free port)")
	noKCM := fs.Bool("no-controller-manager", false, "do not run kube-controller-manager (no garbage collection, namespaces never finish deleting)")
	stdinClose := fs.Bool("exit-on-stdin-close", false, "stop when standard input reaches EOF (lets a parent process tie our lifetime to its own)")
	timeout := fs.Duration("start-timeout", 90*time.Second, "give up if the control plane is not ready within this time")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *dataDir == "" {
		fs.Usage()
		return errors.New("--data-dir is required")
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	s := &supervisor{dataDir: dir, self: self, exited: make(chan string, 4)}
	defer s.stopAll()

	// stopping is closed once, on the first signal or (if asked) when stdin closes; everything that must
	// react to a stop selects on it, so no reader can swallow the event meant for another.
	stopping := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(stopping) }) }
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-signals; stop() }()
	if *stdinClose {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop()
		}()
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	go func() {
		select {
		case <-stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	kubeconfig, err := s.start(ctx, *apiPort, !*noKCM)
	if err != nil {
		return err
	}
	fmt.Printf("ready %s\n", kubeconfig)

	select {
	case <-stopping:
		return nil
	case name := <-s.exited:
		return fmt.Errorf("%s exited unexpectedly; see %s", name, filepath.Join(dir, "logs", name+".log"))
	}
}

func (s *supervisor) start(ctx context.Context, apiPort int, withKCM bool) (string, error) {
	begin := time.Now()
	for _, d := range []string{"logs", "etcd"} {
		if err := os.MkdirAll(filepath.Join(s.dataDir, d), 0o700); err != nil {
			return "", err
		}
	}
	p, err := makePKI(filepath.Join(s.dataDir, "pki"))
	if err != nil {
		return "", fmt.Errorf("certificates: %w", err)
	}
	etcdClient, err := freePort()
	if err != nil {
		return "", err
	}
	etcdPeer, err := freePort()
	if err != nil {
		return "", err
	}
	if apiPort == 0 {
		if apiPort, err = freePort(); err != nil {
			return "", err
		}
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	if err := s.spawn("etcd",
		"--data-dir="+filepath.Join(s.dataDir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--listen-peer-urls=http://127.0.0.1:"+strconv.Itoa(etcdPeer),
	); err != nil {
		return "", err
	}
	if err := poll(ctx, http.DefaultClient, etcdURL+"/health"); err != nil {
		return "", fmt.Errorf("etcd not healthy: %w (log: %s)", err, s.logPath("etcd"))
	}

	server := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	if err := s.spawn("kube-apiserver",
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(apiPort),
		"--cert-dir="+filepath.Join(s.dataDir, "pki"),
		"--tls-cert-file="+p.servingCert,
		"--tls-private-key-file="+p.servingKey,
		"--client-ca-file="+p.caCert,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--service-account-issuer="+server+"/",
		"--service-account-key-file="+p.saPublic,
		"--service-account-signing-key-file="+p.saPrivate,
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		"--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none", // the kubernetes Service cannot point at loopback; nothing here needs it
		"--profiling=false",
		"--v=0",
	); err != nil {
		return "", err
	}

	kubeconfig := filepath.Join(s.dataDir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, server, p); err != nil {
		return "", err
	}
	client, err := adminClient(p)
	if err != nil {
		return "", err
	}
	if err := poll(ctx, client, server+"/readyz"); err != nil {
		return "", fmt.Errorf("kube-apiserver not ready: %w (log: %s)", err, s.logPath("kube-apiserver"))
	}
	if err := poll(ctx, client, server+"/api/v1/namespaces/default"); err != nil {
		return "", fmt.Errorf("namespace default never appeared: %w", err)
	}
	if withKCM {
		if err := s.spawn("kube-controller-manager",
			"--kubeconfig="+kubeconfig,
			"--leader-elect=false",
			"--controllers=garbage-collector-controller,namespace-controller",
			"--use-service-account-credentials=false",
			"--secure-port=0",
			"--v=0",
		); err != nil {
			return "", err
		}
	}
	fmt.Fprintf(os.Stderr, "control plane up in %.1fs at %s\n", time.Since(begin).Seconds(), server)
	return kubeconfig, nil
}

func (s *supervisor) logPath(name string) string {
	return filepath.Join(s.dataDir, "logs", name+".log")
}

// spawn starts one component as a child of this process. Pdeathsig kills the child if the supervisor dies
// without running its shutdown path (e.g. SIGKILL), so no orphan keeps ports or data busy.
func (s *supervisor) spawn(name string, args ...string) error {
	log, err := os.Create(s.logPath(name))
	if err != nil {
		return err
	}
	cmd := exec.Command(s.self, append([]string{name}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	s.mu.Lock()
	s.children = append(s.children, cmd)
	s.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		log.Close()
		s.exited <- name
	}()
	return nil
}

// stopAll stops the components in reverse start order: SIGTERM, then SIGKILL after a grace period.
func (s *supervisor) stopAll() {
	s.mu.Lock()
	children := s.children
	s.children = nil
	s.mu.Unlock()
	for i := len(children) - 1; i >= 0; i-- {
		c := children[i]
		if c.Process == nil || c.ProcessState != nil {
			continue
		}
		_ = c.Process.Signal(syscall.SIGTERM)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if err := c.Process.Signal(syscall.Signal(0)); err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = c.Process.Kill()
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func poll(ctx context.Context, client *http.Client, url string) error {
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("%s: %s", resp.Status, body)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%v (last answer: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func adminClient(p *pki) (*http.Client, error) {
	pair, err := tls.LoadX509KeyPair(p.adminCert, p.adminKey)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(p.caCert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}},
	}, nil
}

func writeKubeconfig(path, server string, p *pki) error {
	read := func(f string) (string, error) {
		b, err := os.ReadFile(f)
		return base64.StdEncoding.EncodeToString(b), err
	}
	ca, err := read(p.caCert)
	if err != nil {
		return err
	}
	cert, err := read(p.adminCert)
	if err != nil {
		return err
	}
	key, err := read(p.adminKey)
	if err != nil {
		return err
	}
	doc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: tether
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: tether
  context:
    cluster: tether
    user: admin
current-context: tether
`, server, ca, cert, key)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
