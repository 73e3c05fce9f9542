// Package server is "k3s server" of the lab's k3s: kine (MariaDB) +
// kube-apiserver + kube-controller-manager + kube-scheduler in one process,
// plus, unless disable-agent, the server's own node parts (containerd,
// kubelet, kube-proxy, flannel: package agent), as k3s servers have.
package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	netutils "k8s.io/utils/net"

	"github.com/k8s-ha/labk3s/internal/agent"
	"github.com/k8s-ha/labk3s/internal/bootstrap"
	"github.com/k8s-ha/labk3s/internal/certs"
	"github.com/k8s-ha/labk3s/internal/cli"
	"github.com/k8s-ha/labk3s/internal/nodepassword"
	"github.com/k8s-ha/labk3s/internal/util"
)

type serverConfig struct {
	o           *cli.Options
	dataDir     string
	serverDir   string
	tlsDir      string
	credDir     string
	port        int
	bindAddress string
	advertise   string
	nodeName    string
	nodeIPs     []string
	passphrase  string
	agentPass   string
	tokenCAHash string
	serviceCIDR string
	clusterCIDR string
	clusterDNS  string
	domain      string
	flannel     string
	boot        bootstrap.Data
	// the admin client once the apiserver is ready: node passwords are
	// checked through it (nil before: such requests get 503, as in k3s)
	admin atomic.Pointer[kubernetes.Interface]
}

// Run runs "k3s server".
func Run(ctx context.Context, o *cli.Options) error {
	// systemd hears READY=1 from the server itself, not from the kubelet inside.
	notify := agent.TakeNotifySocket()
	c := &serverConfig{o: o}
	if err := c.init(); err != nil {
		return err
	}
	if noops := o.NoOps(); len(noops) > 0 {
		logrus.Infof("Accepted but not used by the lab's k3s: %s", strings.Join(noops, "; "))
	}
	if d := o.List("disable"); len(d) > 0 {
		logrus.Infof("Disabled packaged components (recorded; the lab's k3s deploys none): %s", strings.Join(d, ","))
	}
	ep := o.String("datastore-endpoint")
	if ep == "" {
		return errors.New("the lab's k3s needs an external datastore: set datastore-endpoint (mysql://USER:PASS@tcp(HOST:3306)/DB); embedded etcd/sqlite are not built in")
	}
	if !strings.HasPrefix(ep, "mysql://") {
		scheme, _, _ := strings.Cut(ep, "://")
		return fmt.Errorf("the lab's k3s supports only a mysql:// datastore-endpoint (MariaDB/MySQL through kine), got scheme %q", scheme)
	}
	for _, d := range []string{c.tlsDir, c.credDir} {
		if err := os.MkdirAll(d, 0700); err != nil {
			return err
		}
	}
	// remember the cluster-critical settings like k3s does in its node args
	_ = util.WriteFile(filepath.Join(c.serverDir, "labk3s-settings"), []byte(c.settings()), 0600)

	// 1. kine against the external datastore
	etcdURL, err := startKine(ctx, kineConfig{
		Endpoint:   ep,
		SocketPath: filepath.Join(c.serverDir, "kine.sock"),
		CAFile:     o.String("datastore-cafile"),
		CertFile:   o.String("datastore-certfile"),
		KeyFile:    o.String("datastore-keyfile"),
	})
	if err != nil {
		return err
	}

	// 2. bootstrap data (CAs, keys) shared through the datastore
	if err := c.loadBootstrap(ctx, etcdURL); err != nil {
		return err
	}
	if err := c.writeCerts(); err != nil {
		return err
	}

	// 3. components
	errc := make(chan error, 4)
	go func() {
		errc <- fmt.Errorf("kube-apiserver exited: %w", runAPIServer(ctx, c.apiserverArgs(etcdURL), c.router))
	}()
	admin, err := c.waitForAPIServer(ctx, errc)
	if err != nil {
		return err
	}
	c.admin.Store(&admin)
	nodepassword.RunController(ctx, admin)
	if err := c.writeAdminKubeconfig(); err != nil {
		return err
	}
	if err := c.ensureRBAC(ctx, admin); err != nil {
		return err
	}
	if !o.Bool("disable-controller-manager") {
		go func() {
			errc <- fmt.Errorf("kube-controller-manager exited: %w", runControllerManager(ctx, c.kcmArgs()))
		}()
	}
	if !o.Bool("disable-scheduler") {
		go func() {
			errc <- fmt.Errorf("kube-scheduler exited: %w", runScheduler(ctx, c.schedArgs()))
		}()
	}
	logrus.Infof("The lab's k3s server is up: API https://%s:%d, kubeconfig %s, token %s",
		c.advertise, c.port, o.String("write-kubeconfig"), filepath.Join(c.serverDir, "token"))
	notify("READY=1")
	if !o.Bool("disable-agent") && o.Bool("lab-simulated-kubelet") {
		go func() {
			// the control plane keeps running if the simulated kubelet fails
			for ctx.Err() == nil {
				err := c.runLocalAgent(ctx, admin)
				if ctx.Err() != nil {
					return
				}
				logrus.Errorf("Local agent (simulated kubelet) failed, retrying in 5s: %v", err)
				time.Sleep(5 * time.Second)
			}
		}()
	} else if !o.Bool("disable-agent") {
		// As in k3s, the server's node parts are part of the server: when
		// one fails the server exits and systemd restarts it.
		go func() {
			if err := c.runLocalAgent(ctx, admin); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("local agent: %w", err)
			}
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

func (c *serverConfig) init() error {
	o := c.o
	c.dataDir = o.String("data-dir")
	c.serverDir = filepath.Join(c.dataDir, "server")
	c.tlsDir = filepath.Join(c.serverDir, "tls")
	c.credDir = filepath.Join(c.serverDir, "cred")
	port, err := strconv.Atoi(o.String("https-listen-port"))
	if err != nil || port <= 0 || port > 65535 {
		return fmt.Errorf("invalid https-listen-port %q", o.String("https-listen-port"))
	}
	c.port = port
	c.nodeName = o.String("node-name")
	if c.nodeName == "" {
		c.nodeName = util.Hostname()
	}
	c.nodeIPs = o.List("node-ip")
	if len(c.nodeIPs) == 0 {
		c.nodeIPs = []string{util.DefaultIP()}
	}
	for _, ip := range append(append([]string{}, c.nodeIPs...), o.List("node-external-ip")...) {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("invalid node IP %q", ip)
		}
	}
	c.bindAddress = o.String("bind-address")
	if c.bindAddress == "" {
		c.bindAddress = "0.0.0.0"
	}
	c.advertise = o.String("advertise-address")
	if c.advertise == "" {
		c.advertise = c.nodeIPs[0]
	}
	c.serviceCIDR = o.String("service-cidr")
	c.clusterCIDR = o.String("cluster-cidr")
	c.domain = o.String("cluster-domain")
	c.clusterDNS = o.String("cluster-dns")
	c.flannel = o.String("flannel-backend")
	if _, _, err := net.ParseCIDR(strings.Split(c.serviceCIDR, ",")[0]); err != nil {
		return fmt.Errorf("invalid service-cidr %q: %v", c.serviceCIDR, err)
	}
	if _, _, err := net.ParseCIDR(strings.Split(c.clusterCIDR, ",")[0]); err != nil {
		return fmt.Errorf("invalid cluster-cidr %q: %v", c.clusterCIDR, err)
	}
	if c.clusterDNS == "" {
		c.clusterDNS = nthIP(strings.Split(c.serviceCIDR, ",")[0], 10)
	}
	if err := c.cluster().Validate(); err != nil {
		return err
	}
	// token
	tok := o.String("token")
	if tok == "" && o.String("token-file") != "" {
		b, err := os.ReadFile(o.String("token-file"))
		if err != nil {
			return fmt.Errorf("reading token-file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		// k3s generates a token for the first server; with an external
		// datastore every other server needs it, so reuse a previous one.
		if b, err := os.ReadFile(filepath.Join(c.serverDir, "token")); err == nil {
			tok = strings.TrimSpace(string(b))
		} else {
			r := make([]byte, 16)
			_, _ = rand.Read(r)
			tok = hex.EncodeToString(r)
			logrus.Warnf("No token given: generated a random one (see %s)", filepath.Join(c.serverDir, "token"))
		}
	}
	t, err := bootstrap.ParseToken(tok)
	if err != nil {
		return err
	}
	c.passphrase = t.Password
	c.tokenCAHash = t.CAHash
	atok := o.String("agent-token")
	if atok == "" && o.String("agent-token-file") != "" {
		b, err := os.ReadFile(o.String("agent-token-file"))
		if err != nil {
			return fmt.Errorf("reading agent-token-file: %w", err)
		}
		atok = strings.TrimSpace(string(b))
	}
	if atok != "" {
		at, err := bootstrap.ParseToken(atok)
		if err != nil {
			return fmt.Errorf("agent-token: %w", err)
		}
		c.agentPass = at.Password
	}
	return (&agent.NodeConfig{Taints: o.List("node-taint"), Labels: o.List("node-label")}).Validate()
}

func (c *serverConfig) settings() string {
	o := c.o
	lines := []string{
		"cluster-cidr=" + c.clusterCIDR,
		"service-cidr=" + c.serviceCIDR,
		"cluster-dns=" + c.clusterDNS,
		"cluster-domain=" + c.domain,
		"flannel-backend=" + c.flannel,
		"disable-kube-proxy=" + strconv.FormatBool(o.Bool("disable-kube-proxy")),
		"disable=" + strings.Join(o.List("disable"), ","),
		"secrets-encryption=" + strconv.FormatBool(o.Bool("secrets-encryption")),
		"tls-san=" + strings.Join(o.List("tls-san"), ","),
		"node-taint=" + strings.Join(o.List("node-taint"), ","),
	}
	lines = append(lines, o.NoOps()...)
	return strings.Join(lines, "\n") + "\n"
}

// nthIP returns the n-th address of a CIDR.
func nthIP(cidr string, n int64) string {
	_, ipnet, err := net.ParseCIDR(cidr)
	if err != nil {
		return ""
	}
	ip, err := netutils.GetIndexedIP(ipnet, int(n))
	if err != nil {
		return ""
	}
	return ip.String()
}

func (c *serverConfig) loadBootstrap(ctx context.Context, etcdURL string) error {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{etcdURL},
		DialTimeout: 10 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithBlock()},
	})
	if err != nil {
		return fmt.Errorf("connecting to kine: %w", err)
	}
	defer cli.Close()
	bctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	data, created, err := bootstrap.Load(bctx, cli, c.passphrase, newBootstrapData)
	if err != nil {
		return err
	}
	c.boot = data
	if created {
		logrus.Infof("Created new bootstrap data (CAs, service-account key) in the datastore under %s", bootstrap.Key(c.passphrase))
	} else {
		logrus.Infof("Read existing bootstrap data from the datastore (%s): sharing the cluster CA", bootstrap.Key(c.passphrase))
	}
	hash := certs.Hash(c.boot["server-ca.crt"])
	if c.tokenCAHash != "" && c.tokenCAHash != hash {
		return fmt.Errorf("token CA hash %s does not match the cluster CA hash %s", c.tokenCAHash, hash)
	}
	return nil
}

func newBootstrapData() (bootstrap.Data, error) {
	d := bootstrap.Data{}
	for _, name := range []string{"server-ca", "client-ca", "request-header-ca"} {
		ca, err := certs.NewCA("k3s-" + name)
		if err != nil {
			return nil, err
		}
		d[name+".crt"] = ca.CertPEM
		d[name+".key"] = ca.KeyPEM
	}
	sa, err := certs.NewServiceAccountKey()
	if err != nil {
		return nil, err
	}
	d["service.key"] = sa
	// aescbc key for secrets-encryption (k3s keeps it in the bootstrap data too)
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	d["encryption-key"] = []byte(base64.StdEncoding.EncodeToString(k))
	return d, nil
}

func (c *serverConfig) ca(name string) *certs.KeyPair {
	return &certs.KeyPair{CertPEM: c.boot[name+".crt"], KeyPEM: c.boot[name+".key"]}
}

func (c *serverConfig) tls(name string) string { return filepath.Join(c.tlsDir, name) }

func (c *serverConfig) sans() ([]string, []net.IP) {
	dns := map[string]bool{"localhost": true, "kubernetes": true, "kubernetes.default": true,
		"kubernetes.default.svc": true, "kubernetes.default.svc." + c.domain: true, c.nodeName: true}
	ips := map[string]net.IP{}
	add := func(s string) {
		if ip := net.ParseIP(s); ip != nil {
			ips[ip.String()] = ip
		} else if s != "" {
			dns[s] = true
		}
	}
	add("127.0.0.1")
	add("::1")
	add(c.advertise)
	for _, ip := range c.nodeIPs {
		add(ip)
	}
	for _, ip := range c.o.List("node-external-ip") {
		add(ip)
	}
	if c.bindAddress != "0.0.0.0" && c.bindAddress != "::" {
		add(c.bindAddress)
	}
	for _, cidr := range strings.Split(c.serviceCIDR, ",") {
		add(nthIP(strings.TrimSpace(cidr), 1))
	}
	for _, s := range c.o.List("tls-san") {
		add(s)
	}
	var dl []string
	for d := range dns {
		dl = append(dl, d)
	}
	sort.Strings(dl)
	var il []net.IP
	for _, ip := range ips {
		il = append(il, ip)
	}
	return dl, il
}

// leaf is the certificate `name` in the tls folder when the CA `ca` still
// vouches for it (certs.Keeps: same identity and addresses, not near expiry),
// else a new one: a restart keeps certificates and kubeconfigs, as k3s does.
func (c *serverConfig) leaf(name, ca string, l certs.Leaf) (*certs.KeyPair, error) {
	crt, errC := os.ReadFile(c.tls(name + ".crt"))
	key, errK := os.ReadFile(c.tls(name + ".key"))
	if errC == nil && errK == nil {
		have := &certs.KeyPair{CertPEM: crt, KeyPEM: key}
		if c.ca(ca).Keeps(have, l, time.Now()) {
			return have, nil
		}
	}
	logrus.Infof("Issuing certificate %s (none, or not valid for %s any more)", name, l.CommonName)
	return c.ca(ca).Sign(l)
}

func (c *serverConfig) writeCerts() error {
	for name, content := range c.boot {
		if name == "encryption-key" {
			continue
		}
		mode := os.FileMode(0600)
		if strings.HasSuffix(name, ".crt") {
			mode = 0644
		}
		if err := util.WriteFile(c.tls(name), content, mode); err != nil {
			return err
		}
	}
	dns, ips := c.sans()
	serving, err := c.leaf("serving-kube-apiserver", "server-ca", certs.Leaf{CommonName: "kube-apiserver", DNSNames: dns, IPs: ips, Server: true})
	if err != nil {
		return err
	}
	leaves := map[string]*certs.KeyPair{"serving-kube-apiserver": serving}
	clients := map[string]certs.Leaf{
		"client-admin":                 {CommonName: "system:admin", Organization: []string{"system:masters"}, Client: true},
		"client-controller":            {CommonName: "system:kube-controller-manager", Client: true},
		"client-scheduler":             {CommonName: "system:kube-scheduler", Client: true},
		"client-kube-apiserver":        {CommonName: "system:apiserver", Organization: []string{"system:masters"}, Client: true},
		"client-kubelet-" + c.nodeName: {CommonName: "system:node:" + c.nodeName, Organization: []string{"system:nodes"}, Client: true},
		"client-kube-proxy":            {CommonName: "system:kube-proxy", Client: true},
	}
	for name, l := range clients {
		kp, err := c.leaf(name, "client-ca", l)
		if err != nil {
			return err
		}
		leaves[name] = kp
	}
	proxy, err := c.leaf("client-auth-proxy", "request-header-ca", certs.Leaf{CommonName: "system:auth-proxy", Client: true})
	if err != nil {
		return err
	}
	leaves["client-auth-proxy"] = proxy
	for name, kp := range leaves {
		if err := util.WriteFile(c.tls(name+".crt"), kp.CertPEM, 0644); err != nil {
			return err
		}
		if err := util.WriteFile(c.tls(name+".key"), kp.KeyPEM, 0600); err != nil {
			return err
		}
	}
	local := fmt.Sprintf("https://127.0.0.1:%d", c.port)
	for _, name := range []string{"admin", "controller", "scheduler", "kubelet-" + c.nodeName, "kube-proxy"} {
		kc, err := util.Kubeconfig(local, c.boot["server-ca.crt"], leaves["client-"+name].CertPEM, leaves["client-"+name].KeyPEM)
		if err != nil {
			return err
		}
		if err := util.WriteFile(filepath.Join(c.credDir, name+".kubeconfig"), kc, 0600); err != nil {
			return err
		}
	}
	// token files, k3s format: K10<sha256 of CA PEM>::server:<secret>
	hash := certs.Hash(c.boot["server-ca.crt"])
	full := bootstrap.Full(hash, c.passphrase)
	agentFull := full
	if c.agentPass != "" {
		agentFull = "K10" + hash + "::node:" + c.agentPass
	}
	for f, content := range map[string]string{"token": full, "node-token": full, "agent-token": agentFull} {
		if err := util.WriteFile(filepath.Join(c.serverDir, f), []byte(content+"\n"), 0600); err != nil {
			return err
		}
	}
	if c.o.Bool("secrets-encryption") {
		key := c.boot["encryption-key"]
		if len(key) == 0 {
			return errors.New("secrets-encryption: the bootstrap data in this datastore has no encryption key (created by an older lab's k3s)")
		}
		enc := "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources:\n  - secrets\n  providers:\n  - aescbc:\n      keys:\n      - name: aescbckey\n        secret: " + string(key) + "\n  - identity: {}\n"
		if err := util.WriteFile(filepath.Join(c.credDir, "encryption-config.json"), []byte(enc), 0600); err != nil {
			return err
		}
	}
	return nil
}

func (c *serverConfig) verbosity() string {
	if c.o.IsSet("v") {
		return strconv.Itoa(c.o.Int("v"))
	}
	if c.o.Bool("debug") {
		return "2"
	}
	return "0"
}

func (c *serverConfig) apiserverArgs(etcdURL string) []string {
	issuer := "https://kubernetes.default.svc." + c.domain
	reconciler := "lease"
	if ip := net.ParseIP(c.advertise); ip != nil && ip.IsLoopback() {
		// the apiserver refuses a loopback address in the kubernetes
		// Endpoints; only for loopback tests of the lab's k3s.
		logrus.Warnf("advertise-address %s is a loopback address: using --endpoint-reconciler-type=none", c.advertise)
		reconciler = "none"
	}
	anonymous := [][2]string{{"anonymous-auth", "false"}}
	for _, a := range c.o.List("kube-apiserver-arg") {
		if k, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "="); k == "authentication-config" || k == "anonymous-auth" {
			// the apiserver refuses --anonymous-auth together with an
			// AuthenticationConfiguration (which may enable anonymous
			// access for /readyz and /livez only, as with recent k3s)
			anonymous = nil
		}
	}
	if c.o.Bool("secrets-encryption") {
		anonymous = append(anonymous, [2]string{"encryption-provider-config", filepath.Join(c.credDir, "encryption-config.json")})
	}
	return agent.ArgMap(append(anonymous, [][2]string{
		{"endpoint-reconciler-type", reconciler},
		{"advertise-address", c.advertise},
		{"bind-address", c.bindAddress},
		{"secure-port", strconv.Itoa(c.port)},
		{"allow-privileged", "true"},
		{"authorization-mode", "Node,RBAC"},
		{"enable-admission-plugins", "NodeRestriction"},
		{"client-ca-file", c.tls("client-ca.crt")},
		{"etcd-servers", etcdURL},
		{"service-cluster-ip-range", c.serviceCIDR},
		{"service-node-port-range", c.o.String("service-node-port-range")},
		{"service-account-key-file", c.tls("service.key")},
		{"service-account-signing-key-file", c.tls("service.key")},
		{"service-account-issuer", issuer},
		{"api-audiences", issuer + ",k3s"},
		{"tls-cert-file", c.tls("serving-kube-apiserver.crt")},
		{"tls-private-key-file", c.tls("serving-kube-apiserver.key")},
		{"kubelet-client-certificate", c.tls("client-kube-apiserver.crt")},
		{"kubelet-client-key", c.tls("client-kube-apiserver.key")},
		{"kubelet-preferred-address-types", "InternalIP,ExternalIP,Hostname"},
		{"requestheader-client-ca-file", c.tls("request-header-ca.crt")},
		{"requestheader-allowed-names", "system:auth-proxy"},
		{"requestheader-extra-headers-prefix", "X-Remote-Extra-"},
		{"requestheader-group-headers", "X-Remote-Group"},
		{"requestheader-username-headers", "X-Remote-User"},
		{"proxy-client-cert-file", c.tls("client-auth-proxy.crt")},
		{"proxy-client-key-file", c.tls("client-auth-proxy.key")},
		{"profiling", "false"},
		{"storage-backend", "etcd3"},
		{"v", c.verbosity()},
	}...), c.o.List("kube-apiserver-arg"))
}

func (c *serverConfig) kcmArgs() []string {
	kc := filepath.Join(c.credDir, "controller.kubeconfig")
	return agent.ArgMap([][2]string{
		{"kubeconfig", kc},
		{"authentication-kubeconfig", kc},
		{"authorization-kubeconfig", kc},
		{"bind-address", "127.0.0.1"},
		{"secure-port", "10257"},
		{"allocate-node-cidrs", "true"},
		{"cluster-cidr", c.clusterCIDR},
		{"service-cluster-ip-range", c.serviceCIDR},
		{"cluster-signing-cert-file", c.tls("client-ca.crt")},
		{"cluster-signing-key-file", c.tls("client-ca.key")},
		{"root-ca-file", c.tls("server-ca.crt")},
		{"service-account-private-key-file", c.tls("service.key")},
		{"use-service-account-credentials", "true"},
		{"controllers", "*,token-cleaner-controller"},
		{"configure-cloud-routes", "false"},
		{"leader-elect", "true"},
		{"profiling", "false"},
		{"terminated-pod-gc-threshold", "1000"},
		{"v", c.verbosity()},
	}, c.o.List("kube-controller-manager-arg"))
}

func (c *serverConfig) schedArgs() []string {
	kc := filepath.Join(c.credDir, "scheduler.kubeconfig")
	return agent.ArgMap([][2]string{
		{"kubeconfig", kc},
		{"authentication-kubeconfig", kc},
		{"authorization-kubeconfig", kc},
		{"bind-address", "127.0.0.1"},
		{"secure-port", "10259"},
		{"leader-elect", "true"},
		{"profiling", "false"},
		{"v", c.verbosity()},
	}, c.o.List("kube-scheduler-arg"))
}

// router serves the k3s supervisor endpoints in front of the apiserver handler chain.
func (c *serverConfig) router(apiserver http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ping":
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("pong"))
			return
		case "/cacerts":
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write(c.boot["server-ca.crt"])
			return
		case "/v1-k3s/client-kubelet.crt", "/v1-k3s/client-kube-proxy.crt", "/v1-k3s/client-ca.crt", "/v1-k3s/config":
			c.serveNode(w, r)
			return
		}
		apiserver.ServeHTTP(w, r)
	})
}

// cluster is what agents must agree with the servers on (served as /v1-k3s/config).
func (c *serverConfig) cluster() agent.ClusterConfig {
	return agent.ClusterConfig{
		ClusterCIDR: c.clusterCIDR, ServiceCIDR: c.serviceCIDR, ClusterDNS: c.clusterDNS, ClusterDomain: c.domain,
		FlannelBackend: c.flannel, DisableKubeProxy: c.o.Bool("disable-kube-proxy"),
	}
}

// serveNode answers the supervisor paths an agent uses with the node (or
// agent) token: its kubelet client certificate, kube-proxy's, the client
// CA its kubelet authenticates the apiserver with, and the cluster settings.
func (c *serverConfig) serveNode(w http.ResponseWriter, r *http.Request) {
	_, pass, ok := r.BasicAuth()
	okPass := subtle.ConstantTimeCompare([]byte(pass), []byte(c.passphrase)) == 1
	if c.agentPass != "" && subtle.ConstantTimeCompare([]byte(pass), []byte(c.agentPass)) == 1 {
		okPass = true
	}
	if !ok || !okPass {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	name := r.Header.Get("K3s-Node-Name")
	if name == "" || strings.ContainsAny(name, "/: ") {
		http.Error(w, "missing or invalid K3s-Node-Name header", http.StatusBadRequest)
		return
	}
	if r.URL.Path == "/v1-k3s/client-kubelet.crt" {
		// the kubelet's identity: only for the machine whose password
		// this name was first seen with (k3s#802)
		if code, err := c.checkNodePassword(r.Context(), name, r.Header.Get(nodepassword.PasswordHeader)); err != nil {
			http.Error(w, err.Error(), code)
			return
		}
	}
	switch r.URL.Path {
	case "/v1-k3s/client-ca.crt":
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(c.boot["client-ca.crt"])
		return
	case "/v1-k3s/config":
		b, _ := json.Marshal(c.cluster())
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
		return
	}
	leaf := certs.Leaf{CommonName: "system:node:" + name, Organization: []string{"system:nodes"}, Client: true}
	if r.URL.Path == "/v1-k3s/client-kube-proxy.crt" {
		leaf = certs.Leaf{CommonName: "system:kube-proxy", Client: true}
	}
	kp, err := c.ca("client-ca").Sign(leaf)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(append(append([]byte{}, kp.CertPEM...), kp.KeyPEM...))
}

// checkNodePassword answers whether a node may have a kubelet certificate
// under name: the status to refuse it with and why, or 0 and nil. As in
// k3s: no password is a bad request, a mismatch is forbidden, and when the
// Secret cannot be read or written for another reason the node is let in
// and the check is made again in the background until it can be.
func (c *serverConfig) checkNodePassword(ctx context.Context, name, pass string) (int, error) {
	if pass == "" {
		return http.StatusBadRequest, errors.New("node password not set")
	}
	admin := c.admin.Load()
	if admin == nil {
		return http.StatusServiceUnavailable, errors.New("runtime core not ready")
	}
	err := nodepassword.Ensure(ctx, *admin, strings.ToLower(name), pass)
	if err == nil {
		return 0, nil
	}
	if nodepassword.IsMismatch(err) {
		logrus.Warnf("Refused a kubelet certificate for node %s: %v", name, err)
		return http.StatusForbidden, err
	}
	logrus.Infof("Password verification deferred for node %s: %v", name, err)
	go func() {
		for i := 0; i < 120; i++ {
			time.Sleep(5 * time.Second)
			if err := nodepassword.Ensure(context.Background(), *admin, strings.ToLower(name), pass); err == nil || nodepassword.IsMismatch(err) {
				if err != nil {
					logrus.Warnf("Deferred node password secret validation failed: %v", err)
				}
				return
			}
		}
	}()
	return 0, nil
}

// ensureOwnPassword checks this server's own node's password before its
// node parts start, retrying every 5 s while it is refused (a k3s server's
// node asks its own supervisor and retries the same way). Real k3s may
// check a server's own node against its local file only, when its
// apiserver is not ready yet, and then merely record an event on a
// mismatch; the lab's k3s starts its node parts after its apiserver is
// ready, so it always checks against the Secret (the stricter case, which
// k8s-ha must handle anyway).
func (c *serverConfig) ensureOwnPassword(ctx context.Context, admin kubernetes.Interface) error {
	file := nodepassword.File()
	pass, err := nodepassword.EnsureFile(file)
	if err != nil {
		return err
	}
	for {
		err := nodepassword.Ensure(ctx, admin, strings.ToLower(c.nodeName), pass)
		if err == nil {
			return nil
		}
		if nodepassword.IsMismatch(err) {
			logrus.Infof("Waiting to retrieve agent configuration; server is not ready: %s", nodepassword.RejectedMessage(file))
		} else {
			logrus.Infof("Waiting to verify the node password of %s: %v", c.nodeName, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
}

func (c *serverConfig) waitForAPIServer(ctx context.Context, errc chan error) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(c.credDir, "admin.kubeconfig"))
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	last := time.Now()
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		cancel()
		if err == nil && string(body) == "ok" {
			logrus.Infof("kube-apiserver is ready after %s", time.Since(start).Round(time.Millisecond))
			return cs, nil
		}
		if time.Since(last) > 15*time.Second {
			logrus.Infof("Waiting for kube-apiserver to be ready: %v", err)
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case err := <-errc:
			return nil, err
		case <-time.After(time.Second):
		}
	}
}

func (c *serverConfig) writeAdminKubeconfig() error {
	path := c.o.String("write-kubeconfig")
	if path == "" {
		return nil
	}
	mode := os.FileMode(0600)
	if m := c.o.String("write-kubeconfig-mode"); m != "" {
		v, err := strconv.ParseUint(m, 8, 32)
		if err != nil {
			return fmt.Errorf("invalid write-kubeconfig-mode %q", m)
		}
		mode = os.FileMode(v)
	}
	data, err := os.ReadFile(filepath.Join(c.credDir, "admin.kubeconfig"))
	if err != nil {
		return err
	}
	if err := util.WriteFile(path, data, mode); err != nil {
		return err
	}
	logrus.Infof("Wrote kubeconfig %s", path)
	return nil
}

// ensureRBAC lets simulated kubelets (kwok, with a system:node identity) do
// what kwok needs besides what the Node authorizer grants.
func (c *serverConfig) ensureRBAC(ctx context.Context, cs kubernetes.Interface) error {
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "labk3s:simulated-kubelet"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch", "patch", "update"}},
			{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"get", "patch", "update"}},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "delete", "patch"}},
			{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"get", "patch", "update"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
			{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "labk3s:simulated-kubelet"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: "system:nodes"}},
	}
	for i := 0; ; i++ {
		_, err1 := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err1) {
			_, err1 = cs.RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{})
		}
		_, err2 := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err2) {
			err2 = nil
		}
		if err1 == nil && err2 == nil {
			return nil
		}
		if i > 30 {
			return fmt.Errorf("creating RBAC for simulated kubelets: %v %v", err1, err2)
		}
		time.Sleep(time.Second)
	}
}

func (c *serverConfig) runLocalAgent(ctx context.Context, admin kubernetes.Interface) error {
	if err := c.ensureOwnPassword(ctx, admin); err != nil {
		return err
	}
	nc := agent.NodeConfigFromOptions(c.o, c.nodeName, c.nodeIPs, filepath.Join(c.dataDir, "agent"))
	nc.Kubeconfig = filepath.Join(c.credDir, "kubelet-"+c.nodeName+".kubeconfig")
	nc.ProxyKubeconfig = filepath.Join(c.credDir, "kube-proxy.kubeconfig")
	nc.ClientCAFile = c.tls("client-ca.crt")
	nc.Cluster = c.cluster()
	nc.OnRegistered = func(ctx context.Context) {
		// k3s labels its servers (the node itself may not: NodeRestriction)
		patch := []byte(`{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":"true","node-role.kubernetes.io/master":"true"}}}`)
		for i := 0; i < 30; i++ {
			if _, err := admin.CoreV1().Nodes().Patch(ctx, c.nodeName, types.MergePatchType, patch, metav1.PatchOptions{}); err == nil {
				return
			} else {
				logrus.Warnf("labelling node %s: %v", c.nodeName, err)
			}
			time.Sleep(time.Second)
		}
	}
	return agent.Run(ctx, nc)
}
