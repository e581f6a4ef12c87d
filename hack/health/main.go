// Command health says what outside clients read from an object's status, computed by their own
// engines, for the tests:
//
//	health kstatus        kstatus status.Compute (Helm 4 --wait, Flux, kpt, Config Sync)
//	health argocd SCRIPT  an Argo CD resource.customizations health script, run as Argo CD runs it
//
// It reads one object, or a List of them, as JSON on stdin (`kubectl get -o json` reads them from
// the API server) and prints one JSON result a line: {"status": ..., "message": ...}.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sjson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type engine func(obj map[string]any) (result, error)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "health:", err)
		os.Exit(1)
	}
}

func run(args []string, in io.Reader, out io.Writer) error {
	compute, err := engineFor(args)
	if err != nil {
		return err
	}
	objects, err := readObjects(in)
	if err != nil {
		return err
	}
	encoder := json.NewEncoder(out)
	for _, obj := range objects {
		res, err := compute(obj)
		if err != nil {
			return err
		}
		if err := encoder.Encode(res); err != nil {
			return err
		}
	}
	return nil
}

func engineFor(args []string) (engine, error) {
	switch {
	case len(args) == 1 && args[0] == "kstatus":
		return kstatus, nil
	case len(args) == 2 && args[0] == "argocd":
		script, err := os.ReadFile(args[1])
		if err != nil {
			return nil, err
		}
		return func(obj map[string]any) (result, error) { return argoHealth(obj, string(script)) }, nil
	}
	return nil, fmt.Errorf("usage: health kstatus | health argocd SCRIPT (objects as JSON on stdin)")
}

// readObjects decodes numbers as int64 or float64, as the API machinery (and so Argo CD) does.
func readObjects(in io.Reader) ([]map[string]any, error) {
	data, err := io.ReadAll(in)
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := k8sjson.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("stdin is not a JSON object: %w", err)
	}
	kind, _ := obj["kind"].(string)
	items, isList := obj["items"].([]any)
	if !isList || !strings.HasSuffix(kind, "List") {
		return []map[string]any{obj}, nil
	}
	objects := make([]map[string]any, 0, len(items))
	for _, item := range items {
		object, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("a List item is not an object: %v", item)
		}
		objects = append(objects, object)
	}
	return objects, nil
}

func kstatus(obj map[string]any) (result, error) {
	res, err := status.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		return result{}, err
	}
	return result{Status: res.Status.String(), Message: res.Message}, nil
}
