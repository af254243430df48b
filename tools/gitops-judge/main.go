// Command tether-gitops-judge tells what two GitOps tools would say about Kubernetes objects: the kstatus
// status (sigs.k8s.io/cli-utils, as Flux, kpt and `kubectl wait`-style tooling compute it) and the Argo CD
// health given by the Lua health customizations of an argocd-cm ConfigMap (run as Argo CD runs them; see
// argocd.go).
//
//	tether-gitops-judge --argocd-cm deploy/argocd/argocd-cm.yaml            # NDJSON objects on stdin
//	tether-gitops-judge --argocd-cm deploy/argocd/argocd-cm.yaml obj.json   # one object (JSON or YAML) per file
//
// For every input line (or file) it writes exactly one JSON line:
//
//	{"kstatus":"Current","kstatusMessage":"...","argocd":"Healthy","argocdMessage":"..."}
//
// or {"error":"..."} when the input is not an object, kstatus cannot compute a status, or the health script
// fails (where Argo CD would show health Unknown with that message). Bad input never stops it; it exits 0 at
// the end of stdin.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type verdict struct {
	Kstatus        string `json:"kstatus"`
	KstatusMessage string `json:"kstatusMessage"`
	Argocd         string `json:"argocd"`
	ArgocdMessage  string `json:"argocdMessage"`
}

type failure struct {
	Error string `json:"error"`
}

func main() {
	cmPath := flag.String("argocd-cm", "", "argocd-cm ConfigMap (or a patch of it: a YAML file with a top-level data: map) holding resource.customizations.health.<group>_<Kind> Lua scripts")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s --argocd-cm FILE [OBJECT-FILE...]\n"+
			"Reads one JSON Kubernetes object per stdin line (or one per file) and prints one JSON verdict line for each.\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if *cmPath == "" {
		flag.Usage()
		os.Exit(2)
	}
	overrides, err := loadArgoCDConfigMap(*cmPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tether-gitops-judge: %s: %v\n", *cmPath, err)
		os.Exit(1)
	}

	// os.Stdout is unbuffered and Encode writes each line with one Write: every answer is flushed at once.
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	if flag.NArg() > 0 {
		for _, path := range flag.Args() {
			data, err := os.ReadFile(path)
			if err == nil && !json.Valid(data) {
				data, err = yaml.YAMLToJSON(data)
			}
			if err != nil {
				_ = out.Encode(failure{fmt.Sprintf("%s: %v", path, err)})
				continue
			}
			_ = out.Encode(judge(overrides, data))
		}
		return
	}

	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	for {
		line, err := in.ReadBytes('\n')
		// Every line gets one answer (a blank one an error); a last line without its newline too.
		if err == nil || len(bytes.TrimSpace(line)) > 0 {
			if encErr := out.Encode(judge(overrides, line)); encErr != nil {
				fmt.Fprintf(os.Stderr, "tether-gitops-judge: writing stdout: %v\n", encErr)
				os.Exit(1)
			}
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "tether-gitops-judge: reading stdin: %v\n", err)
			os.Exit(1)
		}
	}
}

// judge returns a verdict or a failure for one JSON object; it never panics.
func judge(overrides resourceOverrides, data []byte) (answer any) {
	defer func() {
		if r := recover(); r != nil {
			answer = failure{fmt.Sprintf("internal error: %v", r)}
		}
	}()
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return failure{"empty input line: expected one JSON Kubernetes object"}
	}
	// Decoded as client-go decodes what the API server sends (and so as Argo CD's cluster cache holds it):
	// integers become int64, other numbers float64.
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(data); err != nil {
		return failure{fmt.Sprintf("input is not a Kubernetes object: %v", err)}
	}
	ks, err := status.Compute(obj)
	if err != nil {
		return failure{fmt.Sprintf("kstatus: %v", err)}
	}
	health, err := argoCDHealth(obj, overrides)
	if err != nil {
		return failure{fmt.Sprintf("argocd: %v", err)}
	}
	return verdict{
		Kstatus:        ks.Status.String(),
		KstatusMessage: ks.Message,
		Argocd:         health.Status,
		ArgocdMessage:  health.Message,
	}
}
