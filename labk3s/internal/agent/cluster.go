package agent

import (
	"fmt"
	"net"
	"strings"
)

// ClusterConfig is what every node of the cluster must agree on. Servers
// take it from their own options; agents fetch it from the server
// (`/v1-k3s/config`), as k3s agents do, because these are server options.
type ClusterConfig struct {
	ClusterCIDR      string `json:"clusterCIDR"`
	ServiceCIDR      string `json:"serviceCIDR"`
	ClusterDNS       string `json:"clusterDNS"`
	ClusterDomain    string `json:"clusterDomain"`
	FlannelBackend   string `json:"flannelBackend"`
	DisableKubeProxy bool   `json:"disableKubeProxy"`
}

// FlannelBackends are the flannel backends built into the lab's k3s.
var FlannelBackends = []string{"vxlan", "host-gw", "none"}

// Validate checks the settings before anything starts.
func (c ClusterConfig) Validate() error {
	if _, _, err := net.ParseCIDR(strings.Split(c.ClusterCIDR, ",")[0]); err != nil {
		return fmt.Errorf("invalid cluster-cidr %q: %v", c.ClusterCIDR, err)
	}
	if _, _, err := net.ParseCIDR(strings.Split(c.ServiceCIDR, ",")[0]); err != nil {
		return fmt.Errorf("invalid service-cidr %q: %v", c.ServiceCIDR, err)
	}
	if net.ParseIP(c.ClusterDNS) == nil {
		return fmt.Errorf("invalid cluster-dns %q: expected an IP address", c.ClusterDNS)
	}
	for _, b := range FlannelBackends {
		if c.FlannelBackend == b {
			return nil
		}
	}
	if c.FlannelBackend == "wireguard-native" {
		return fmt.Errorf("flannel-backend %q is not built into the lab's k3s (it has %s)", c.FlannelBackend, strings.Join(FlannelBackends, ", "))
	}
	return fmt.Errorf("invalid flannel-backend %q: expected one of %s", c.FlannelBackend, strings.Join(FlannelBackends, ", "))
}

// ArgMap merges KEY=VALUE arguments over defaults, as k3s does for
// kubelet-arg and friends: a user's key replaces the default for it, new
// keys are appended in the order given. Returns --KEY=VALUE flags.
func ArgMap(defaults [][2]string, user []string) []string {
	keys := []string{}
	vals := map[string]string{}
	for _, kv := range defaults {
		if _, ok := vals[kv[0]]; !ok {
			keys = append(keys, kv[0])
		}
		vals[kv[0]] = kv[1]
	}
	for _, a := range user {
		a = strings.TrimLeft(a, "-")
		k, v, _ := strings.Cut(a, "=")
		if _, ok := vals[k]; !ok {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, "--"+k+"="+vals[k])
	}
	return out
}
