package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/component-base/featuregate"
	apiapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apioptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

// runAPIServer runs the upstream kube-apiserver in-process, like
// cmd/kube-apiserver/app.Run, but wraps the outermost handler chain so that
// the k3s-style endpoints (/ping, /cacerts, /v1-k3s/...) are served on the
// same port without authentication.
func runAPIServer(ctx context.Context, args []string, wrap func(http.Handler) http.Handler) error {
	s := apioptions.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range s.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("kube-apiserver flags: %w", err)
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	featureGate := s.GenericServerRunOptions.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)

	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return utilerrors.NewAggregate(errs)
	}
	featureGate.(featuregate.MutableFeatureGate).AddMetrics()
	s.GenericServerRunOptions.ComponentGlobalsRegistry.AddMetrics()

	if completed.InformerName == nil {
		name, err := cache.NewInformerName("kube-apiserver")
		if err != nil {
			return err
		}
		completed.InformerName = name
	}
	config, err := apiapp.NewConfig(completed)
	if err != nil {
		return err
	}
	orig := config.Aggregator.GenericConfig.BuildHandlerChainFunc
	config.Aggregator.GenericConfig.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
		return wrap(orig(h, c))
	}
	cc, err := config.Complete()
	if err != nil {
		return err
	}
	srv, err := apiapp.CreateServerChain(cc)
	if err != nil {
		return err
	}
	prepared, err := srv.PrepareRun()
	if err != nil {
		return err
	}
	return prepared.Run(ctx)
}

func runControllerManager(ctx context.Context, args []string) error {
	cmd := kcmapp.NewControllerManagerCommand()
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}

func runScheduler(ctx context.Context, args []string) error {
	cmd := schedapp.NewSchedulerCommand()
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}
