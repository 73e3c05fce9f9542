package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Run runs the node until ctx ends: by default for real, as k3s does
// (containerd as a child, then the kubelet and kube-proxy in this process,
// then flannel once the Node has a podCIDR), or simulated by kwok when
// nc.Simulated. Any part that fails ends the whole, as in k3s (systemd
// restarts the unit).
func Run(ctx context.Context, nc *NodeConfig) error {
	if err := nc.Validate(); err != nil {
		return err
	}
	if nc.Simulated {
		logrus.Warnf("lab-simulated-kubelet: node %s is simulated by kwok; no container will run on it", nc.Name)
		return runSimulated(ctx, nc)
	}
	if err := nc.Cluster.Validate(); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", nc.Kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	containerdExit, err := nc.startContainerd(ctx)
	if err != nil {
		return err
	}
	if err := nc.importImages(ctx); err != nil {
		return err
	}
	errc := make(chan error, 4)
	part := func(what string, f func(context.Context) error) {
		go func() {
			err := f(ctx)
			if ctx.Err() == nil {
				errc <- fmt.Errorf("%s exited: %v", what, err)
			}
		}()
	}
	part("kubelet", nc.runKubelet)
	if !nc.Cluster.DisableKubeProxy {
		part("kube-proxy", nc.runKubeProxy)
	}
	go func() {
		if err := waitNode(ctx, cs, nc.Name); err != nil {
			errc <- err
			return
		}
		if nc.OnRegistered != nil {
			nc.OnRegistered(ctx)
		}
		if nc.Cluster.FlannelBackend == "none" {
			logrus.Infof("flannel-backend none: no pod network from the lab's k3s (bring your own CNI into %s)", nc.cniConfDir())
			return
		}
		if err := nc.runFlannel(ctx, cs); err != nil {
			errc <- err
		}
	}()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	case err := <-containerdExit:
		return err
	}
}

// waitNode waits for the kubelet to register the Node.
func waitNode(ctx context.Context, cs kubernetes.Interface, name string) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		_, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			logrus.Infof("Node %s is registered by its kubelet", name)
			return nil
		}
		if !apierrors.IsNotFound(err) {
			logrus.Debugf("Waiting for node %s: %v", name, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the kubelet did not register node %s within 5 min (last error: %v)", name, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
