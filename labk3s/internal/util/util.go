// Package util holds small helpers of the lab's k3s.
package util

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// SdNotify sends a state string (e.g. "READY=1") to systemd when run under Type=notify.
func SdNotify(state string) error {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return nil
	}
	addr := &net.UnixAddr{Name: sock, Net: "unixgram"}
	if strings.HasPrefix(sock, "@") {
		addr.Name = "\x00" + sock[1:]
	}
	c, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

// WriteFile writes data atomically with mode, creating parent dirs.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Kubeconfig renders a kubeconfig with embedded credentials (like k3s.yaml).
func Kubeconfig(server string, caPEM, certPEM, keyPEM []byte) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["default"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["default"] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts["default"] = &clientcmdapi.Context{Cluster: "default", AuthInfo: "default"}
	cfg.CurrentContext = "default"
	return clientcmd.Write(*cfg)
}

// DefaultIP returns the first global unicast IPv4 address of the interface
// carrying the default route, or of any interface, or 127.0.0.1.
func DefaultIP() string {
	if f, err := os.Open("/proc/net/route"); err == nil {
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			fields := strings.Fields(s.Text())
			if len(fields) > 2 && fields[1] == "00000000" {
				if ifc, err := net.InterfaceByName(fields[0]); err == nil {
					if ip := firstIPv4(ifc); ip != "" {
						return ip
					}
				}
			}
		}
	}
	ifs, _ := net.Interfaces()
	for i := range ifs {
		if ifs[i].Flags&net.FlagLoopback != 0 || ifs[i].Flags&net.FlagUp == 0 {
			continue
		}
		if ip := firstIPv4(&ifs[i]); ip != "" {
			return ip
		}
	}
	return "127.0.0.1"
}

func firstIPv4(ifc *net.Interface) string {
	addrs, _ := ifc.Addrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}

// Hostname returns the lower-cased host name (k3s's default node name).
func Hostname() string {
	h, _ := os.Hostname()
	return strings.ToLower(h)
}

// MemTotalKi returns MemTotal from /proc/meminfo in KiB.
func MemTotalKi() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "MemTotal:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				return v
			}
		}
	}
	return 0
}
