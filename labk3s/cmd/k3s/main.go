// Command k3s is "the lab's k3s": a stand-in for the k3s binary built from
// upstream components (kine, kube-apiserver, kube-controller-manager,
// kube-scheduler, kwok, kubectl) for the k8s-ha lab. See ../../README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/component-base/version"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/k8s-ha/labk3s/internal/agent"
	labcli "github.com/k8s-ha/labk3s/internal/cli"
	"github.com/k8s-ha/labk3s/internal/server"
)

// labVersion is overridden by the build script (-X main.labVersion=...).
// It is k3s-style (the Kubernetes release it is built from, "+k3s1"), so that
// a cluster file's k3s.version can name it; the commit slot of --version says
// "labk3s", the mark of the double.
var labVersion = "v1.37.2+k3s1"

func versionString() string {
	v := labVersion
	if gv := version.Get().GitVersion; strings.HasPrefix(gv, "v1.") {
		v = gv
	}
	return fmt.Sprintf("k3s version %s (labk3s)\ngo version %s\n", v, runtime.Version())
}

const usage = `NAME:
   k3s - the lab's k3s: a stand-in for k3s built from upstream Kubernetes components

USAGE:
   k3s [global options] command [command options] [arguments...]

COMMANDS:
   server   Run management server (kine on MariaDB + kube-apiserver + kube-controller-manager + kube-scheduler)
   agent    Run node agent (registers a Node simulated by kwok)
   kubectl  Run kubectl
   completion  Print (or with -i install) a bash completion script

GLOBAL OPTIONS:
   --version, -v  print the version
   --help, -h     show help
`

func main() {
	base := filepath.Base(os.Args[0])
	if base == "kubectl" {
		os.Exit(runKubectl(os.Args[1:]))
	}
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(1)
	}
	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "--version", "-v", "version":
		fmt.Print(versionString())
		return
	case "--help", "-h", "help":
		fmt.Print(usage)
		return
	case "kubectl":
		os.Exit(runKubectl(args))
	case "completion":
		os.Exit(runCompletion(args))
	case "server", "agent":
		os.Exit(runDaemon(cmd, args))
	default:
		fmt.Fprintf(os.Stderr, "k3s: unknown command %q (the lab's k3s supports: server, agent, kubectl, completion, --version)\n", cmd)
		os.Exit(1)
	}
}

func runDaemon(cmd string, args []string) int {
	logrus.SetOutput(os.Stderr)
	logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	// kube-controller-manager and kube-scheduler both apply the (identical)
	// logging configuration in this one process.
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged
	o, err := labcli.Parse(cmd, args)
	if errors.Is(err, pflag.ErrHelp) {
		fmt.Printf("Usage: k3s %s [OPTIONS]\n\n%s", cmd, labcli.Usage(cmd))
		return 0
	}
	if err != nil {
		logrus.Errorf("Error: %v", err)
		return 1
	}
	if o.Bool("debug") {
		logrus.SetLevel(logrus.DebugLevel)
	}
	logrus.Infof("Starting the lab's k3s %s %s", cmd, strings.TrimSpace(strings.Split(versionString(), "\n")[0]))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "server":
		err = server.Run(ctx, o)
	case "agent":
		err = agent.RunAgent(ctx, o)
	}
	if err != nil && ctx.Err() == nil {
		logrus.Errorf("Error: %v", err)
		return 1
	}
	logrus.Infof("The lab's k3s %s stopped", cmd)
	return 0
}

func runKubectl(args []string) int {
	if os.Getenv("KUBECONFIG") == "" && !hasKubeconfigFlag(args) {
		// like k3s: default to the admin kubeconfig when it is readable
		if f, err := os.Open(labcli.DefaultKubeconfig); err == nil {
			f.Close()
			os.Setenv("KUBECONFIG", labcli.DefaultKubeconfig)
		}
	}
	os.Args = append([]string{"kubectl"}, args...)
	logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := kubectlcmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		kubectlutil.CheckErr(err)
		return 1
	}
	return 0
}

func hasKubeconfigFlag(args []string) bool {
	for _, a := range args {
		if a == "--kubeconfig" || strings.HasPrefix(a, "--kubeconfig=") {
			return true
		}
	}
	return false
}
