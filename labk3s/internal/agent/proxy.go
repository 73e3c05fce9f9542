package agent

import (
	"context"
	"strings"

	"github.com/sirupsen/logrus"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"
)

// kubeProxyArgs are k3s's kube-proxy flags (iptables mode, healthz on
// loopback, the cluster CIDR for masquerading) with kube-proxy-arg merged
// over them. The conntrack settings are zero so kube-proxy writes no
// host-wide sysctl (nf_conntrack_max and the timeouts belong to the host,
// not to one lab machine).
func (nc *NodeConfig) kubeProxyArgs() []string {
	return ArgMap([][2]string{
		{"proxy-mode", "iptables"},
		{"healthz-bind-address", "127.0.0.1"},
		{"metrics-bind-address", "127.0.0.1:10249"},
		{"kubeconfig", nc.ProxyKubeconfig},
		{"cluster-cidr", nc.Cluster.ClusterCIDR},
		{"hostname-override", nc.Name},
		{"conntrack-max-per-core", "0"},
		{"conntrack-tcp-timeout-established", "0s"},
		{"conntrack-tcp-timeout-close-wait", "0s"},
		{"v", nc.Verbosity},
	}, nc.KubeProxyArgs)
}

// runKubeProxy runs the real kube-proxy (k8s.io/kubernetes/cmd/kube-proxy/app)
// in this process.
func (nc *NodeConfig) runKubeProxy(ctx context.Context) error {
	args := nc.kubeProxyArgs()
	logrus.Infof("Running kube-proxy %s", strings.Join(args, " "))
	cmd := proxyapp.NewProxyCommand()
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}
