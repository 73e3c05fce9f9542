package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	cliflag "k8s.io/component-base/cli/flag"
	kubeletapp "k8s.io/kubernetes/cmd/kubelet/app"
	kubeletoptions "k8s.io/kubernetes/cmd/kubelet/app/options"
	kubeletvalidation "k8s.io/kubernetes/pkg/kubelet/apis/config/validation"
	"k8s.io/kubernetes/pkg/kubelet/kubeletconfig/configfiles"
	utilfs "k8s.io/kubernetes/pkg/util/filesystem"

	"github.com/k8s-ha/labk3s/internal/util"
)

// kubeletConfig is the KubeletConfiguration the lab's k3s writes, with
// k3s's defaults where k3s sets them (webhook authn/authz with the cluster's
// client CA, eviction at 5%, no swap check, healthz on loopback), plus what
// a lab machine needs (FACTS: cgroup v1 host): cgroupfs and failCgroupV1
// false. kubelet-arg flags are applied over it, as in k3s.
func (nc *NodeConfig) kubeletConfig() ([]byte, error) {
	var taints []map[string]string
	for _, t := range nc.Taints {
		tt, err := ParseTaint(t)
		if err != nil {
			return nil, err
		}
		taints = append(taints, map[string]string{"key": tt.Key, "value": tt.Value, "effect": string(tt.Effect)})
	}
	resolv := nc.ResolvConf
	if resolv == "" {
		resolv = "/etc/resolv.conf"
	}
	cfg := map[string]interface{}{
		"apiVersion": "kubelet.config.k8s.io/v1beta1",
		"kind":       "KubeletConfiguration",
		"address":    "0.0.0.0",
		"authentication": map[string]interface{}{
			"anonymous": map[string]interface{}{"enabled": false},
			"webhook":   map[string]interface{}{"enabled": true, "cacheTTL": "2m0s"},
			"x509":      map[string]interface{}{"clientCAFile": nc.ClientCAFile},
		},
		"authorization":            map[string]interface{}{"mode": "Webhook", "webhook": map[string]interface{}{"cacheAuthorizedTTL": "5m0s", "cacheUnauthorizedTTL": "30s"}},
		"cgroupDriver":             "cgroupfs",
		"failCgroupV1":             false,
		"clusterDNS":               []string{nc.Cluster.ClusterDNS},
		"clusterDomain":            nc.Cluster.ClusterDomain,
		"containerRuntimeEndpoint": "unix://" + ContainerdSocket,
		"evictionHard":             map[string]string{"imagefs.available": "5%", "nodefs.available": "5%"},
		"evictionMinimumReclaim":   map[string]string{"imagefs.available": "10%", "nodefs.available": "10%"},
		"failSwapOn":               false,
		"healthzBindAddress":       "127.0.0.1",
		"healthzPort":              10248,
		"port":                     10250,
		"readOnlyPort":             0,
		"resolvConf":               resolv,
		"serializeImagePulls":      false,
		"staticPodPath":            filepath.Join(nc.DataDir, "pod-manifests"),
		"protectKernelDefaults":    nc.ProtectKernelDefaults,
		"registerWithTaints":       taints,
		"registerNode":             true,
		"cgroupsPerQOS":            true,
		"enforceNodeAllocatable":   []string{"pods"},
		"imageServiceEndpoint":     "unix://" + ContainerdSocket,
		"logging":                  map[string]interface{}{"format": "text"},
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// kubeletArgs are the flags k3s passes on the kubelet's command line, with
// kubelet-arg merged over them (a user's key wins).
func (nc *NodeConfig) kubeletArgs(configFile string) []string {
	labels := []string{"node.kubernetes.io/instance-type=k3s"}
	labels = append(labels, nc.Labels...)
	defaults := [][2]string{
		{"config", configFile},
		{"kubeconfig", nc.Kubeconfig},
		{"hostname-override", nc.Name},
		{"node-ip", strings.Join(nc.IPs, ",")},
		{"node-labels", strings.Join(labels, ",")},
		{"cert-dir", filepath.Join(nc.DataDir, "kubelet-pki")},
		{"root-dir", "/var/lib/kubelet"},
		{"v", nc.Verbosity},
	}
	return ArgMap(defaults, nc.KubeletArgs)
}

// runKubelet runs the real kubelet (k8s.io/kubernetes/cmd/kubelet/app) in
// this process until ctx ends. It does what the kubelet command's RunE does
// (load the config file, apply flags over it, validate, build the
// dependencies, Run), minus its process-wide signal handler: the
// apiserver's components in a server already own the one allowed per
// process, and ctx carries the shutdown.
func (nc *NodeConfig) runKubelet(ctx context.Context) error {
	cfgJSON, err := nc.kubeletConfig()
	if err != nil {
		return err
	}
	configFile := filepath.Join(nc.DataDir, "etc", "kubelet.conf.json")
	if err := util.WriteFile(configFile, cfgJSON, 0600); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(nc.DataDir, "pod-manifests"), 0755); err != nil {
		return err
	}
	args := nc.kubeletArgs(configFile)
	logrus.Infof("Running kubelet %s", strings.Join(args, " "))

	loader, err := configfiles.NewFsLoader(&utilfs.DefaultFs{}, configFile)
	if err != nil {
		return err
	}
	kc, err := loader.Load(ctx)
	if err != nil {
		return fmt.Errorf("kubelet config %s: %w", configFile, err)
	}
	kf := kubeletoptions.NewKubeletFlags()
	fs := pflag.NewFlagSet("kubelet", pflag.ContinueOnError)
	fs.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	kf.AddFlags(fs)
	kubeletoptions.AddKubeletConfigFlags(fs, kc)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("kubelet-arg: %w", err)
	}
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(kc.FeatureGates); err != nil {
		return fmt.Errorf("kubelet feature gates: %w", err)
	}
	if err := kubeletoptions.ValidateKubeletFlags(kf); err != nil {
		return fmt.Errorf("kubelet flags: %w", err)
	}
	if err := kubeletvalidation.ValidateKubeletConfiguration(kc, utilfeature.DefaultFeatureGate); err != nil {
		return fmt.Errorf("kubelet configuration: %w", err)
	}
	s := &kubeletoptions.KubeletServer{KubeletFlags: *kf, KubeletConfiguration: *kc}
	deps, err := kubeletapp.UnsecuredDependencies(ctx, s, utilfeature.DefaultFeatureGate)
	if err != nil {
		return fmt.Errorf("kubelet dependencies: %w", err)
	}
	return kubeletapp.Run(ctx, s, deps, utilfeature.DefaultFeatureGate)
}
