// Command argocd runs Argo CD's application controller or repo-server as a host process, for the
// tests that sync lockgate releases through a real Argo CD (hack/build-argocd.sh builds it).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	controller "github.com/argoproj/argo-cd/v3/cmd/argocd-application-controller/commands"
	reposerver "github.com/argoproj/argo-cd/v3/cmd/argocd-repo-server/commands"
	"github.com/argoproj/argo-cd/v3/util/log"
)

// The two components the tests run; Argo CD's own binary picks one by the name it is called by.
var components = map[string]func() *cobra.Command{
	"application-controller": controller.NewCommand,
	"repo-server":            reposerver.NewCommand,
}

func init() {
	// As Argo CD's own main: client-go's klog lines in Argo CD's log format and level.
	klog.SetLogger(log.NewLogrusLogger(log.NewWithCurrentConfig()))
}

func main() {
	if len(os.Args) < 2 || components[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: argocd application-controller|repo-server [flags]")
		os.Exit(2)
	}
	command := components[os.Args[1]]()
	command.SetArgs(os.Args[2:])
	if err := command.Execute(); err != nil {
		os.Exit(1)
	}
}
