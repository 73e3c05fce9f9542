// Package agent is the lab's k3s agent: with a node identity
// (system:node:NAME) it runs the node parts for real (containerd, kubelet,
// kube-proxy, flannel: run.go), or, only when asked (lab-simulated-kubelet),
// registers a Node and runs kwok in-process to simulate the kubelet (node
// heartbeat + Lease, pod status: this file).
package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/version"

	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodelease "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
	kwokconfig "sigs.k8s.io/kwok/pkg/config"
	kwokcmd "sigs.k8s.io/kwok/pkg/kwok/cmd"
	kwoklog "sigs.k8s.io/kwok/pkg/log"

	"github.com/k8s-ha/labk3s/internal/util"
)

// NodeConfig describes the node: what the kubelet registers and how its
// node parts (containerd, kubelet, kube-proxy, flannel) run.
type NodeConfig struct {
	Name         string
	IPs          []string
	ExternalIPs  []string
	Taints       []string
	Labels       []string
	Kubeconfig   string                    // node identity kubeconfig (kubelet, flannel)
	DataDir      string                    // agent data dir (DATA_DIR/agent)
	PodCIDR      string                    // fallback pod CIDR for kwok
	OnRegistered func(ctx context.Context) // called once the Node exists

	Cluster               ClusterConfig
	ClientCAFile          string // the cluster's client CA: the kubelet authenticates the apiserver with it
	ProxyKubeconfig       string // system:kube-proxy kubeconfig
	KubeletArgs           []string
	KubeProxyArgs         []string
	FlannelIface          string
	ResolvConf            string
	PauseImage            string
	Verbosity             string
	ProtectKernelDefaults bool
	// Simulated runs kwok instead of the node parts (lab-simulated-kubelet:
	// large simulated fleets only; no container runs).
	Simulated bool
}

// ParseTaint parses KEY[=VALUE]:EFFECT.
func ParseTaint(s string) (corev1.Taint, error) {
	kv, effect, ok := strings.Cut(s, ":")
	if !ok {
		return corev1.Taint{}, fmt.Errorf("invalid node-taint %q: expected KEY[=VALUE]:EFFECT", s)
	}
	k, v, _ := strings.Cut(kv, "=")
	switch corev1.TaintEffect(effect) {
	case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
	default:
		return corev1.Taint{}, fmt.Errorf("invalid node-taint %q: effect must be NoSchedule, PreferNoSchedule or NoExecute", s)
	}
	if k == "" {
		return corev1.Taint{}, fmt.Errorf("invalid node-taint %q: empty key", s)
	}
	return corev1.Taint{Key: k, Value: v, Effect: corev1.TaintEffect(effect)}, nil
}

// ParseLabels parses KEY=VALUE list.
func ParseLabels(list []string) (map[string]string, error) {
	out := map[string]string{}
	for _, l := range list {
		for _, p := range strings.Split(l, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			k, v, ok := strings.Cut(p, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("invalid node-label %q: expected KEY=VALUE", p)
			}
			out[k] = v
		}
	}
	return out, nil
}

// Validate checks taints and labels before anything starts.
func (nc *NodeConfig) Validate() error {
	for _, t := range nc.Taints {
		if _, err := ParseTaint(t); err != nil {
			return err
		}
	}
	labels, err := ParseLabels(nc.Labels)
	if err != nil {
		return err
	}
	for k := range labels {
		if restrictedLabel(k) {
			return fmt.Errorf("node-label %q: unknown 'kubernetes.io' or 'k8s.io' labels cannot be set by the node (NodeRestriction), like with a real kubelet", k)
		}
	}
	return nil
}

func restrictedLabel(k string) bool {
	prefix, _, ok := strings.Cut(k, "/")
	if !ok {
		return false
	}
	if !(prefix == "kubernetes.io" || strings.HasSuffix(prefix, ".kubernetes.io") || prefix == "k8s.io" || strings.HasSuffix(prefix, ".k8s.io")) {
		return false
	}
	switch {
	case strings.HasPrefix(prefix, "kubelet.kubernetes.io"), strings.HasPrefix(prefix, "node.kubernetes.io"),
		k == "kubernetes.io/hostname", k == "kubernetes.io/os", k == "kubernetes.io/arch",
		k == "topology.kubernetes.io/region", k == "topology.kubernetes.io/zone",
		k == "failure-domain.beta.kubernetes.io/region", k == "failure-domain.beta.kubernetes.io/zone",
		k == "beta.kubernetes.io/instance-type", k == "node.kubernetes.io/instance-type":
		return false
	}
	return true
}

// Register creates or updates the Node object with the node's own identity.
func Register(ctx context.Context, cs kubernetes.Interface, nc *NodeConfig) error {
	labels, err := ParseLabels(nc.Labels)
	if err != nil {
		return err
	}
	var taints []corev1.Taint
	for _, t := range nc.Taints {
		tt, err := ParseTaint(t)
		if err != nil {
			return err
		}
		taints = append(taints, tt)
	}
	base := map[string]string{
		"kubernetes.io/hostname":           nc.Name,
		"kubernetes.io/os":                 "linux",
		"kubernetes.io/arch":               runtime.GOARCH,
		"beta.kubernetes.io/os":            "linux",
		"beta.kubernetes.io/arch":          runtime.GOARCH,
		"node.kubernetes.io/instance-type": "k3s",
	}
	for k, v := range labels {
		base[k] = v
	}
	annotations := map[string]string{
		"kwok.x-k8s.io/node":                                     "fake",
		"node.alpha.kubernetes.io/ttl":                           "0",
		"volumes.kubernetes.io/controller-managed-attach-detach": "true",
		"k3s.io/internal-ip":                                     strings.Join(nc.IPs, ","),
		"labk3s/simulated-by":                                    "kwok",
	}
	for {
		node, err := cs.CoreV1().Nodes().Get(ctx, nc.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			node = &corev1.Node{
				ObjectMeta: metav1.ObjectMeta{Name: nc.Name, Labels: base, Annotations: annotations},
				Spec:       corev1.NodeSpec{Taints: taints},
			}
			if _, err = cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err == nil || apierrors.IsAlreadyExists(err) {
				logrus.Infof("Registered node %s", nc.Name)
				break
			}
		} else if err == nil {
			// merge-patch only our labels/annotations: a full Update could
			// race with taints added by the node lifecycle controller, which
			// NodeRestriction forbids a node to change.
			var patch []byte
			patch, err = json.Marshal(map[string]interface{}{"metadata": map[string]interface{}{"labels": base, "annotations": annotations}})
			if err == nil {
				_, err = cs.CoreV1().Nodes().Patch(ctx, nc.Name, types.MergePatchType, patch, metav1.PatchOptions{})
			}
			if err == nil {
				logrus.Infof("Node %s already registered", nc.Name)
				break
			}
		}
		if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
			return fmt.Errorf("registering node %s: %w", nc.Name, err)
		}
		logrus.Warnf("Waiting to register node %s: %v", nc.Name, err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	// status: addresses, capacity, node info (kwok keeps what is there)
	// status: addresses, capacity, node info (kwok keeps what is there).
	// A status merge patch leaves spec (taints) alone.
	var addrs []corev1.NodeAddress
	for _, ip := range nc.IPs {
		addrs = append(addrs, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	for _, ip := range nc.ExternalIPs {
		addrs = append(addrs, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: ip})
	}
	addrs = append(addrs, corev1.NodeAddress{Type: corev1.NodeHostName, Address: nc.Name})
	mem := util.MemTotalKi()
	res := corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity(mem*1024, resource.BinarySI),
		corev1.ResourcePods:             *resource.NewQuantity(110, resource.DecimalSI),
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	}
	v := version.Get().GitVersion
	status := corev1.NodeStatus{
		Addresses:   addrs,
		Capacity:    res,
		Allocatable: res.DeepCopy(),
		NodeInfo: corev1.NodeSystemInfo{
			Architecture:            runtime.GOARCH,
			OperatingSystem:         "linux",
			OSImage:                 "lab's k3s (kwok-simulated kubelet)",
			KernelVersion:           kernelVersion(),
			KubeletVersion:          v,
			KubeProxyVersion:        v,
			ContainerRuntimeVersion: "kwok://" + v,
			MachineID:               readTrim("/etc/machine-id"),
			BootID:                  readTrim("/proc/sys/kernel/random/boot_id"),
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
	}
	patch, err := json.Marshal(map[string]interface{}{"status": status})
	if err != nil {
		return err
	}
	return retry(ctx, func() error {
		_, err := cs.CoreV1().Nodes().Patch(ctx, nc.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
		return err
	})
}

func retry(ctx context.Context, f func() error) error {
	var err error
	for i := 0; i < 30; i++ {
		if err = f(); err == nil {
			return nil
		}
		if apierrors.IsForbidden(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return err
}

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

func kernelVersion() string {
	return readTrim("/proc/sys/kernel/osrelease")
}

var kwokOnce sync.Mutex

// runSimulated registers the node and runs kwok for it until ctx ends.
func runSimulated(ctx context.Context, nc *NodeConfig) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", nc.Kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if err := Register(ctx, cs, nc); err != nil {
		return err
	}
	if nc.OnRegistered != nil {
		nc.OnRegistered(ctx)
	}
	return runKwok(ctx, nc)
}

func runKwok(ctx context.Context, nc *NodeConfig) error {
	kwokOnce.Lock()
	stages := strings.Join([]string{nodefast.DefaultNodeInit, nodelease.DefaultNodeHeartbeatWithLease,
		podfast.DefaultPodReady, podfast.DefaultPodComplete, podfast.DefaultPodDelete}, "\n---\n")
	cfgPath := filepath.Join(nc.DataDir, "kwok", "stages.yaml")
	if err := util.WriteFile(cfgPath, []byte(stages), 0644); err != nil {
		kwokOnce.Unlock()
		return err
	}
	ip := ""
	if len(nc.IPs) > 0 {
		ip = nc.IPs[0]
	}
	args := []string{
		"--kubeconfig=" + nc.Kubeconfig,
		"--manage-single-node=" + nc.Name,
		"--node-name=" + nc.Name,
		"--node-ip=" + ip,
		"--node-port=0", // no kwok server (it would bind the kubelet port 10250)
		"--node-lease-duration-seconds=40",
		"--server-address=",
	}
	if nc.PodCIDR != "" {
		args = append(args, "--cidr="+nc.PodCIDR)
	}
	// kwok reads its --config from os.Args; give it a clean argv.
	saved := os.Args
	os.Args = []string{"kwok", "--config=" + cfgPath}
	fs := pflag.NewFlagSet("kwok-global", pflag.ContinueOnError)
	fs.ParseErrorsAllowlist.UnknownFlags = true
	fs.Usage = func() {}
	kctx, _ := kwoklog.InitFlags(ctx, fs)
	kctx, err := kwokconfig.InitFlags(kctx, fs)
	os.Args = saved
	kwokOnce.Unlock()
	if err != nil {
		return fmt.Errorf("kwok config: %w", err)
	}
	cmd := kwokcmd.NewCommand(kctx)
	// cobra would add a bool --version flag, which collides with the
	// component-base "version" flag already on pflag.CommandLine.
	cmd.Version = ""
	cmd.SetArgs(args)
	logrus.Infof("Running simulated kubelet (kwok) for node %s: kwok %s", nc.Name, strings.Join(args, " "))
	return cmd.ExecuteContext(kctx)
}

// Itoa is a tiny helper.
func Itoa(i int) string { return strconv.Itoa(i) }
