package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/flannel-io/flannel/pkg/backend"
	_ "github.com/flannel-io/flannel/pkg/backend/hostgw" // flannel-backend: host-gw
	_ "github.com/flannel-io/flannel/pkg/backend/vxlan"  // flannel-backend: vxlan (k3s's default)
	"github.com/flannel-io/flannel/pkg/ip"
	"github.com/flannel-io/flannel/pkg/ipmatch"
	"github.com/flannel-io/flannel/pkg/subnet/kube"
	"github.com/flannel-io/flannel/pkg/trafficmngr/iptables"
	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/k8s-ha/labk3s/internal/util"
)

const (
	flannelSubnetFile = "/run/flannel/subnet.env"
	cniConfName       = "10-flannel.conflist"
)

// runFlannel runs flannel in this process the way k3s embeds it: the kube
// subnet manager (the node's podCIDR from the controller-manager, the
// backend's data in node annotations under flannel.alpha.coreos.com), the
// chosen backend (vxlan: a flannel.1 device and an FDB/ARP/route entry per
// other node; host-gw: a route per other node), flannel's iptables
// masquerade and forward rules, and /run/flannel/subnet.env. Then it
// writes the CNI config the flannel CNI plugin would hand to the bridge
// plugin (Debian ships no flannel CNI plugin): bridge cni0 with the node's
// subnet, default gateway, hairpin, portmap. Returns once the network is
// set up; flannel keeps running in the background until ctx ends.
func (nc *NodeConfig) runFlannel(ctx context.Context, cs kubernetes.Interface) error {
	if err := nc.waitPodCIDR(ctx, cs); err != nil {
		return err
	}
	netConf := filepath.Join(nc.DataDir, "etc", "flannel", "net-conf.json")
	conf, _ := json.Marshal(map[string]interface{}{
		"Network":    nc.Cluster.ClusterCIDR,
		"EnableIPv4": true,
		"EnableIPv6": false,
		"Backend":    map[string]string{"Type": nc.Cluster.FlannelBackend},
	})
	if err := util.WriteFile(netConf, conf, 0644); err != nil {
		return err
	}
	// flannel's kube subnet manager finds its node by this variable.
	os.Setenv("NODE_NAME", nc.Name)
	sm, err := kube.NewSubnetManager(ctx, "", nc.Kubeconfig, "flannel.alpha.coreos.com", netConf, false)
	if err != nil {
		return fmt.Errorf("flannel: %w", err)
	}
	config, err := sm.GetNetworkConfig(ctx)
	if err != nil {
		return fmt.Errorf("flannel: %w", err)
	}
	stack, err := ipmatch.GetIPFamily(true, false)
	if err != nil {
		return err
	}
	want := nc.FlannelIface
	if want == "" && len(nc.IPs) > 0 {
		want = nc.IPs[0] // flannel finds the interface holding this address
	}
	publicIP := ""
	if len(nc.IPs) > 0 {
		publicIP = nc.IPs[0]
	}
	ext, err := ipmatch.LookupExtIface(want, "", "", stack, ipmatch.PublicIPOpts{PublicIP: publicIP})
	if err != nil {
		return fmt.Errorf("flannel: no interface for %q: %w", want, err)
	}
	var wg sync.WaitGroup
	be, err := backend.NewManager(ctx, sm, ext).GetBackend(config.BackendType)
	if err != nil {
		return fmt.Errorf("flannel backend %s: %w", config.BackendType, err)
	}
	bn, err := be.RegisterNetwork(ctx, &wg, config)
	if err != nil {
		return fmt.Errorf("flannel: registering the %s network: %w", config.BackendType, err)
	}
	tm := &iptables.IPTablesManager{}
	if err := tm.Init(ctx); err != nil {
		return fmt.Errorf("flannel iptables: %w", err)
	}
	if err := tm.SetupAndEnsureMasqRules(ctx, config.Network, ip.IP4Net{}, ip.IP4Net{}, config.IPv6Network, ip.IP6Net{}, ip.IP6Net{}, bn.Lease(), 60, false); err != nil {
		return fmt.Errorf("flannel masquerade rules: %w", err)
	}
	tm.SetupAndEnsureForwardRules(ctx, config.Network, config.IPv6Network, 60)
	if err := sm.HandleSubnetFile(flannelSubnetFile, config, true, bn.Lease().Subnet, bn.Lease().IPv6Subnet, bn.MTU()); err != nil {
		return fmt.Errorf("flannel subnet file: %w", err)
	}
	if err := nc.writeCNIConfig(bn.Lease().Subnet.String(), bn.MTU()); err != nil {
		return err
	}
	logrus.Infof("flannel (%s on %s): node subnet %s of %s, MTU %d", config.BackendType, ext.Iface.Name, bn.Lease().Subnet, config.Network, bn.MTU())
	go bn.Run(ctx)
	return nil
}

func (nc *NodeConfig) waitPodCIDR(ctx context.Context, cs kubernetes.Interface) error {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		n, err := cs.CoreV1().Nodes().Get(ctx, nc.Name, metav1.GetOptions{})
		if err == nil && n.Spec.PodCIDR != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("flannel: node %s got no podCIDR from the controller-manager within 3 min (last error: %v)", nc.Name, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// writeCNIConfig writes what flannel's CNI plugin delegates to the bridge
// plugin (its defaults as k3s configures them), with the node's subnet.
func (nc *NodeConfig) writeCNIConfig(subnet string, mtu int) error {
	conf := map[string]interface{}{
		"cniVersion": "1.0.0",
		"name":       "cbr0",
		"plugins": []map[string]interface{}{
			{
				"type": "bridge", "bridge": "cni0", "mtu": mtu,
				"isGateway": true, "isDefaultGateway": true, "ipMasq": false, "hairpinMode": true, "forceAddress": true,
				"ipam": map[string]interface{}{
					"type":   "host-local",
					"ranges": [][]map[string]string{{{"subnet": subnet}}},
				},
			},
			{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true},
			{"type": "bandwidth", "capabilities": map[string]bool{"bandwidth": true}},
		},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	return util.WriteFile(filepath.Join(nc.cniConfDir(), cniConfName), b, 0644)
}
