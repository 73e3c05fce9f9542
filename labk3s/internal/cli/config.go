// Package cli parses the subset of k3s's command line and
// /etc/rancher/k3s/config.yaml that the lab's k3s supports.
//
// Precedence is the same as k3s: environment variables (K3S_TOKEN, ...)
// are the weakest, then the config file (+ config.yaml.d/*.yaml), then
// command-line flags.
package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

const (
	DefaultConfigFile = "/etc/rancher/k3s/config.yaml"
	DefaultKubeconfig = "/etc/rancher/k3s/k3s.yaml"
)

type kind int

const (
	kString kind = iota
	kBool
	kList
	kInt
)

// Option describes one supported flag / config key.
type Option struct {
	Name   string
	Short  string
	Kind   kind
	Def    string
	Env    []string
	Usage  string
	NoOp   bool // accepted and recorded, no effect in the lab's k3s
	Hidden bool
}

// Options is the parsed result.
type Options struct {
	Command string
	strs    map[string]string
	lists   map[string][]string
	bools   map[string]bool
	set     map[string]string // name -> source ("flag", "config", "env")
	defs    map[string]Option
}

func (o *Options) String(name string) string { o.must(name); return o.strs[name] }
func (o *Options) List(name string) []string { o.must(name); return o.lists[name] }
func (o *Options) Bool(name string) bool     { o.must(name); return o.bools[name] }
func (o *Options) IsSet(name string) bool    { _, ok := o.set[name]; return ok }
func (o *Options) Source(name string) string { return o.set[name] }
func (o *Options) Int(name string) int {
	o.must(name)
	i, err := strconv.Atoi(o.strs[name])
	if err != nil {
		return 0
	}
	return i
}
func (o *Options) must(name string) {
	if _, ok := o.defs[name]; !ok {
		panic("labk3s: option not defined for " + o.Command + ": " + name)
	}
}

// Recorded returns "key=value" lines for every option that was set and has no effect.
func (o *Options) NoOps() []string {
	var out []string
	for name, src := range o.set {
		d := o.defs[name]
		if !d.NoOp {
			continue
		}
		v := o.strs[name]
		switch d.Kind {
		case kList:
			v = strings.Join(o.lists[name], ",")
		case kBool:
			v = strconv.FormatBool(o.bools[name])
		}
		out = append(out, fmt.Sprintf("%s=%s (from %s)", name, v, src))
	}
	sort.Strings(out)
	return out
}

var common = []Option{
	{Name: "config", Short: "c", Def: DefaultConfigFile, Env: []string{"K3S_CONFIG_FILE"}, Usage: "load configuration from FILE"},
	{Name: "debug", Kind: kBool, Env: []string{"K3S_DEBUG"}, Usage: "turn on debug logs"},
	{Name: "v", Kind: kInt, Def: "0", Usage: "log level verbosity for the embedded components"},
	{Name: "data-dir", Short: "d", Def: "/var/lib/rancher/k3s", Env: []string{"K3S_DATA_DIR"}, Usage: "folder to hold state"},
	{Name: "token", Short: "t", Env: []string{"K3S_TOKEN"}, Usage: "shared secret used to join a server or agent to a cluster"},
	{Name: "token-file", Env: []string{"K3S_TOKEN_FILE"}, Usage: "file containing the token"},
	{Name: "node-name", Env: []string{"K3S_NODE_NAME"}, Usage: "node name (default: hostname)"},
	{Name: "node-ip", Short: "i", Kind: kList, Usage: "IP address to advertise for the node"},
	{Name: "node-external-ip", Kind: kList, Usage: "external IP address to advertise for the node"},
	{Name: "node-taint", Kind: kList, Usage: "registering kubelet with set of taints"},
	{Name: "node-label", Kind: kList, Usage: "registering and starting kubelet with set of labels"},
	{Name: "kubelet-arg", Kind: kList, Usage: "customized flag for kubelet process"},
	{Name: "kube-proxy-arg", Kind: kList, Usage: "customized flag for kube-proxy process"},
	{Name: "with-node-id", Kind: kBool, NoOp: true, Usage: "accepted, recorded"},
	{Name: "protect-kernel-defaults", Kind: kBool, Usage: "kernel tuning behavior: if set, error if kernel tunables differ from the kubelet defaults"},
	{Name: "selinux", Kind: kBool, NoOp: true, Usage: "accepted, recorded"},
	{Name: "resolv-conf", Env: []string{"K3S_RESOLV_CONF"}, Usage: "kubelet resolv.conf file"},
	{Name: "flannel-iface", Usage: "override default flannel interface"},
	{Name: "pause-image", Usage: "customized pause image for containerd sandbox (default: registry.k8s.io/pause:3.10.2)"},
	{Name: "lab-simulated-kubelet", Kind: kBool, Env: []string{"LABK3S_SIMULATED_KUBELET"}, Usage: "lab's k3s only: simulate this node's kubelet with kwok instead of running containerd, kubelet, kube-proxy and flannel (large simulated fleets; no container runs)"},
	{Name: "prefer-bundled-bin", Kind: kBool, NoOp: true, Usage: "accepted, recorded"},
	{Name: "lb-server-port", NoOp: true, Usage: "accepted, recorded"},
}

var serverOnly = []Option{
	{Name: "datastore-endpoint", Env: []string{"K3S_DATASTORE_ENDPOINT"}, Usage: "external datastore: mysql://USER:PASS@tcp(HOST:3306)/DB"},
	{Name: "datastore-cafile", Env: []string{"K3S_DATASTORE_CAFILE"}, Usage: "TLS CA file for the datastore"},
	{Name: "datastore-certfile", Env: []string{"K3S_DATASTORE_CERTFILE"}, Usage: "TLS client cert for the datastore"},
	{Name: "datastore-keyfile", Env: []string{"K3S_DATASTORE_KEYFILE"}, Usage: "TLS client key for the datastore"},
	{Name: "tls-san", Kind: kList, Usage: "additional hostnames or IPs as Subject Alternative Names in the server TLS cert"},
	{Name: "disable", Kind: kList, Usage: "do not deploy packaged components (recorded; the lab's k3s deploys none)"},
	{Name: "bind-address", Usage: "k3s bind address (default: 0.0.0.0)"},
	{Name: "advertise-address", Usage: "IP address that apiserver uses to advertise to members of the cluster (default: node-ip)"},
	{Name: "advertise-port", NoOp: true, Usage: "accepted, recorded (the apiserver advertises https-listen-port)"},
	{Name: "https-listen-port", Def: "6443", Usage: "HTTPS listen port"},
	{Name: "cluster-cidr", Def: "10.42.0.0/16", Usage: "IPv4/IPv6 network CIDRs to use for pod IPs"},
	{Name: "service-cidr", Def: "10.43.0.0/16", Usage: "IPv4/IPv6 network CIDRs to use for service IPs"},
	{Name: "service-node-port-range", Def: "30000-32767", Usage: "port range to reserve for services with NodePort visibility"},
	{Name: "cluster-dns", Usage: "cluster IP for the coredns service (default: 10th address of service-cidr)"},
	{Name: "cluster-domain", Def: "cluster.local", Usage: "cluster domain"},
	{Name: "write-kubeconfig", Short: "o", Env: []string{"K3S_KUBECONFIG_OUTPUT"}, Def: "/etc/rancher/k3s/k3s.yaml", Usage: "write kubeconfig for admin client to this file"},
	{Name: "write-kubeconfig-mode", Env: []string{"K3S_KUBECONFIG_MODE"}, Usage: "write kubeconfig with this mode (default 0600)"},
	{Name: "kube-apiserver-arg", Kind: kList, Usage: "customized flag for kube-apiserver process"},
	{Name: "kube-controller-manager-arg", Kind: kList, Usage: "customized flag for kube-controller-manager process"},
	{Name: "kube-scheduler-arg", Kind: kList, Usage: "customized flag for kube-scheduler process"},
	{Name: "disable-agent", Kind: kBool, Usage: "do not run a local agent and register a local kubelet"},
	{Name: "disable-scheduler", Kind: kBool, Usage: "disable the kube-scheduler"},
	{Name: "disable-controller-manager", Kind: kBool, Usage: "disable the kube-controller-manager"},
	{Name: "disable-apiserver", Kind: kBool, NoOp: true, Usage: "accepted, recorded (not supported: ignored)"},
	{Name: "disable-etcd", Kind: kBool, NoOp: true, Usage: "accepted, recorded"},
	{Name: "disable-cloud-controller", Kind: kBool, NoOp: true, Usage: "accepted, recorded (no cloud controller in the lab's k3s)"},
	{Name: "disable-kube-proxy", Kind: kBool, Usage: "disable running kube-proxy"},
	{Name: "disable-network-policy", Kind: kBool, NoOp: true, Usage: "accepted, recorded"},
	{Name: "disable-helm-controller", Kind: kBool, NoOp: true, Usage: "accepted, recorded"},
	{Name: "flannel-backend", Def: "vxlan", Usage: "backend: 'none', 'vxlan' or 'host-gw' (wireguard-native is not built into the lab's k3s)"},
	{Name: "flannel-ipv6-masq", Kind: kBool, NoOp: true, Usage: "accepted, recorded"},
	{Name: "egress-selector-mode", NoOp: true, Usage: "accepted, recorded"},
	{Name: "secrets-encryption", Kind: kBool, Usage: "enable secret encryption at rest (aescbc key shared through the bootstrap data)"},
	{Name: "agent-token", Env: []string{"K3S_AGENT_TOKEN"}, Usage: "shared secret used to join agents to the cluster, but not servers"},
	{Name: "agent-token-file", Env: []string{"K3S_AGENT_TOKEN_FILE"}, Usage: "file containing the agent secret"},
	{Name: "cluster-init", Kind: kBool, NoOp: true, Usage: "accepted, recorded (embedded etcd is not available; use datastore-endpoint)"},
	{Name: "etcd-expose-metrics", Kind: kBool, NoOp: true, Usage: "accepted, recorded"},
	{Name: "kube-cloud-controller-manager-arg", Kind: kList, NoOp: true, Usage: "accepted, recorded"},
	{Name: "default-local-storage-path", NoOp: true, Usage: "accepted, recorded"},
	{Name: "system-default-registry", NoOp: true, Usage: "accepted, recorded"},
	{Name: "embedded-registry", Kind: kBool, NoOp: true, Usage: "accepted, recorded"},
	{Name: "supervisor-metrics", Kind: kBool, NoOp: true, Usage: "accepted, recorded"},
	{Name: "write-kubeconfig-group", NoOp: true, Usage: "accepted, recorded"},
	{Name: "kine-listen", Hidden: true, Usage: "lab's k3s: kine listener (default unix://DATA_DIR/server/kine.sock)"},
}

var agentOnly = []Option{
	{Name: "server", Short: "s", Env: []string{"K3S_URL"}, Usage: "server to connect to (https://LB:6443)"},
}

// Defs returns the option definitions for a command ("server" or "agent").
func Defs(command string) []Option {
	defs := append([]Option{}, common...)
	switch command {
	case "server":
		defs = append(defs, serverOnly...)
	case "agent":
		defs = append(defs, agentOnly...)
	}
	return defs
}

// Parse parses env, config file and args for command.
func Parse(command string, args []string) (*Options, error) {
	o := &Options{Command: command, strs: map[string]string{}, lists: map[string][]string{},
		bools: map[string]bool{}, set: map[string]string{}, defs: map[string]Option{}}
	fs := pflag.NewFlagSet("k3s "+command, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.Usage = func() {}
	var strPtrs = map[string]*string{}
	var listPtrs = map[string]*[]string{}
	var boolPtrs = map[string]*bool{}
	for _, d := range Defs(command) {
		o.defs[d.Name] = d
		usage := d.Usage
		if d.NoOp && !strings.Contains(usage, "accepted") {
			usage += " (accepted, recorded, no effect)"
		}
		switch d.Kind {
		case kString, kInt:
			strPtrs[d.Name] = fs.StringP(d.Name, d.Short, d.Def, usage)
			o.strs[d.Name] = d.Def
		case kList:
			listPtrs[d.Name] = fs.StringArrayP(d.Name, d.Short, nil, usage)
		case kBool:
			boolPtrs[d.Name] = fs.BoolP(d.Name, d.Short, false, usage)
		}
		if d.Hidden {
			_ = fs.MarkHidden(d.Name)
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("k3s %s: unexpected arguments %q", command, fs.Args())
	}
	// 1. env
	for _, d := range Defs(command) {
		for _, e := range d.Env {
			if v, ok := os.LookupEnv(e); ok && v != "" {
				if err := o.setValue(d, []string{v}, false, "env "+e); err != nil {
					return nil, err
				}
				break
			}
		}
	}
	// 2. config file(s)
	cfgFile := o.strs["config"]
	if f := fs.Lookup("config"); f != nil && f.Changed {
		cfgFile = *strPtrs["config"]
	}
	if err := o.loadConfigFiles(cfgFile, fs.Lookup("config").Changed || o.IsSet("config")); err != nil {
		return nil, err
	}
	// 3. flags
	var ferr error
	fs.Visit(func(f *pflag.Flag) {
		d := o.defs[f.Name]
		var vals []string
		switch d.Kind {
		case kString, kInt:
			vals = []string{*strPtrs[d.Name]}
		case kList:
			vals = *listPtrs[d.Name]
		case kBool:
			vals = []string{strconv.FormatBool(*boolPtrs[d.Name])}
		}
		if err := o.setValue(d, vals, false, "flag"); err != nil && ferr == nil {
			ferr = err
		}
	})
	return o, ferr
}

func (o *Options) setValue(d Option, vals []string, appendList bool, src string) error {
	switch d.Kind {
	case kString:
		o.strs[d.Name] = vals[len(vals)-1]
	case kInt:
		if _, err := strconv.Atoi(vals[len(vals)-1]); err != nil {
			return fmt.Errorf("%s: invalid integer %q for %s", src, vals[len(vals)-1], d.Name)
		}
		o.strs[d.Name] = vals[len(vals)-1]
	case kBool:
		b, err := strconv.ParseBool(vals[len(vals)-1])
		if err != nil {
			return fmt.Errorf("%s: invalid boolean %q for %s", src, vals[len(vals)-1], d.Name)
		}
		o.bools[d.Name] = b
	case kList:
		var out []string
		for _, v := range vals {
			// k3s: comma separated values in list flags are split (except for *-arg)
			if strings.HasSuffix(d.Name, "-arg") || d.Name == "node-taint" || d.Name == "node-label" {
				out = append(out, v)
				continue
			}
			for _, p := range strings.Split(v, ",") {
				if p = strings.TrimSpace(p); p != "" {
					out = append(out, p)
				}
			}
		}
		if appendList {
			o.lists[d.Name] = append(o.lists[d.Name], out...)
		} else {
			o.lists[d.Name] = out
		}
	}
	o.set[d.Name] = src
	return nil
}

// loadConfigFiles loads FILE and FILE.d/*.yaml (k3s: config.yaml.d), in lexical order.
func (o *Options) loadConfigFiles(file string, explicit bool) error {
	files := []string{}
	if _, err := os.Stat(file); err == nil {
		files = append(files, file)
	} else if explicit && !os.IsNotExist(err) {
		return err
	} else if explicit && file != DefaultConfigFile {
		return fmt.Errorf("config file %s: %w", file, err)
	}
	dropins, _ := filepath.Glob(filepath.Join(file+".d", "*.yaml"))
	sort.Strings(dropins)
	files = append(files, dropins...)
	for _, f := range files {
		if err := o.loadConfigFile(f); err != nil {
			return err
		}
	}
	return nil
}

func (o *Options) loadConfigFile(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("config file %s: invalid YAML: %w", file, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var unknown []string
	for _, key := range keys {
		val := m[key]
		name := key
		appendList := false
		if strings.HasSuffix(name, "+") {
			name = strings.TrimSuffix(name, "+")
			appendList = true
		}
		d, ok := o.defs[name]
		if !ok {
			// also accept the short names k3s accepts
			for _, dd := range o.defs {
				if dd.Short != "" && dd.Short == name {
					d, ok = dd, true
				}
			}
		}
		if !ok || name == "config" {
			unknown = append(unknown, key)
			continue
		}
		var vals []string
		switch v := val.(type) {
		case []interface{}:
			if d.Kind != kList {
				return fmt.Errorf("config file %s: key %q takes a single value, got a list", file, key)
			}
			for _, x := range v {
				vals = append(vals, scalar(x))
			}
		case map[string]interface{}:
			return fmt.Errorf("config file %s: key %q: maps are not supported", file, key)
		case nil:
			continue
		default:
			vals = []string{scalar(v)}
		}
		if len(vals) == 0 {
			vals = []string{""}
			if d.Kind == kList {
				o.lists[d.Name] = nil
				o.set[d.Name] = "config " + file
				continue
			}
		}
		if err := o.setValue(d, vals, appendList, "config "+file); err != nil {
			return err
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("config file %s: unknown configuration key(s) for 'k3s %s' in the lab's k3s: %s (supported keys: run 'k3s %s --help')",
			file, o.Command, strings.Join(unknown, ", "), o.Command)
	}
	return nil
}

func scalar(x interface{}) string {
	switch v := x.(type) {
	case string:
		return v
	case float64:
		if v == float64(int64(v)) {
			return strconv.FormatInt(int64(v), 10)
		}
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

// Usage prints the flags for a command.
func Usage(command string) string {
	fs := pflag.NewFlagSet("k3s "+command, pflag.ContinueOnError)
	for _, d := range Defs(command) {
		if d.Hidden {
			continue
		}
		switch d.Kind {
		case kString, kInt:
			fs.StringP(d.Name, d.Short, d.Def, d.Usage)
		case kList:
			fs.StringArrayP(d.Name, d.Short, nil, d.Usage)
		case kBool:
			fs.BoolP(d.Name, d.Short, false, d.Usage)
		}
	}
	return fs.FlagUsages()
}
