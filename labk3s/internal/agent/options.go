package agent

import (
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/k8s-ha/labk3s/internal/cli"
)

// NodeConfigFromOptions fills what servers and agents set the same way
// from their options; the caller adds credentials and cluster settings.
func NodeConfigFromOptions(o *cli.Options, name string, ips []string, agentDir string) *NodeConfig {
	v := "0"
	if o.IsSet("v") {
		v = strconv.Itoa(o.Int("v"))
	} else if o.Bool("debug") {
		v = "2"
	}
	return &NodeConfig{
		Name:                  name,
		IPs:                   ips,
		ExternalIPs:           o.List("node-external-ip"),
		Taints:                o.List("node-taint"),
		Labels:                o.List("node-label"),
		DataDir:               agentDir,
		KubeletArgs:           o.List("kubelet-arg"),
		KubeProxyArgs:         o.List("kube-proxy-arg"),
		FlannelIface:          o.String("flannel-iface"),
		ResolvConf:            o.String("resolv-conf"),
		PauseImage:            o.String("pause-image"),
		ProtectKernelDefaults: o.Bool("protect-kernel-defaults"),
		Simulated:             o.Bool("lab-simulated-kubelet"),
		Verbosity:             v,
	}
}

// TakeNotifySocket removes NOTIFY_SOCKET from the environment, so the
// kubelet inside (which sends READY=1 when it starts) and containerd
// cannot tell systemd the unit is ready, and returns a function that
// notifies systemd on the lab's k3s's own terms (as k3s does).
func TakeNotifySocket() func(state string) {
	sock := os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	return func(state string) {
		if sock == "" {
			return
		}
		addr := &net.UnixAddr{Name: sock, Net: "unixgram"}
		if strings.HasPrefix(sock, "@") {
			addr.Name = "\x00" + sock[1:]
		}
		c, err := net.DialUnix("unixgram", nil, addr)
		if err != nil {
			logrus.Warnf("sd_notify: %v", err)
			return
		}
		defer c.Close()
		if _, err := c.Write([]byte(state)); err != nil {
			logrus.Warnf("sd_notify: %v", err)
		}
	}
}
