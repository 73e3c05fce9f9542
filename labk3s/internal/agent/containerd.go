package agent

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/k8s-ha/labk3s/internal/util"
)

// Where the lab's k3s runs containerd. Socket and state are k3s's paths;
// the root is Debian's /var/lib/containerd because the lab gives that
// folder a non-overlay filesystem (overlayfs snapshots cannot sit on the
// machine's overlay root), where k3s would use DATA_DIR/agent/containerd.
const (
	ContainerdSocket = "/run/k3s/containerd/containerd.sock"
	containerdState  = "/run/k3s/containerd"
	containerdRoot   = "/var/lib/containerd"
	cniBinDir        = "/usr/lib/cni" // Debian's containernetworking-plugins
	// DefaultPauseImage is the sandbox image: kubeadm's PauseVersion for
	// Kubernetes v1.37 (k3s would use rancher/mirrored-pause).
	DefaultPauseImage = "registry.k8s.io/pause:3.10.2"
)

func (nc *NodeConfig) cniConfDir() string { return filepath.Join(nc.DataDir, "etc", "cni", "net.d") }

// containerdConfig renders containerd 1.6's config (version 2), as k3s
// renders its own: CRI with runc v2, cgroupfs (as the kubelet), CNI from
// Debian's plugin folder and the agent's conf dir.
func (nc *NodeConfig) containerdConfig() string {
	pause := nc.PauseImage
	if pause == "" {
		pause = DefaultPauseImage
	}
	// Without CAP_SYS_RESOURCE (a lab machine) runc cannot lower a
	// container's oom_score_adj below its own and fails ("can't get final
	// child's PID from pipe: EOF"); containerd then clamps it instead.
	restrict := !hasCapability(24) // CAP_SYS_RESOURCE
	return fmt.Sprintf(`# Written by the lab's k3s (a test double for k3s) at every start.
version = 2
root = %q
state = %q

[grpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "10010"
  enable_selinux = false
  sandbox_image = %q
  restrict_oom_score_adj = %t

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  disable_snapshot_annotations = true
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = %q
  conf_dir = %q
`, containerdRoot, containerdState, ContainerdSocket, filepath.Join(nc.DataDir, "containerd-opt"), pause, restrict, cniBinDir, nc.cniConfDir())
}

// hasCapability reports whether the process has capability bit n in its effective set.
func hasCapability(n uint) bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<n) != 0
		}
	}
	return false
}

// startContainerd runs containerd as a child, as k3s does (it dies with the
// lab's k3s; the container shims it started do not, as with k3s's
// KillMode=process unit). Returns once its socket answers; the channel
// gets its exit.
func (nc *NodeConfig) startContainerd(ctx context.Context) (<-chan error, error) {
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return nil, fmt.Errorf("containerd not found: the lab's k3s runs the host's containerd and runc (Debian: apt-get install containerd runc containernetworking-plugins)")
	}
	if _, err := os.Stat(filepath.Join(cniBinDir, "bridge")); err != nil {
		return nil, fmt.Errorf("CNI plugins missing in %s: install containernetworking-plugins", cniBinDir)
	}
	cfg := filepath.Join(nc.DataDir, "etc", "containerd", "config.toml")
	if err := util.WriteFile(cfg, []byte(nc.containerdConfig()), 0600); err != nil {
		return nil, err
	}
	for _, d := range []string{containerdState, containerdRoot, nc.cniConfDir()} {
		if err := os.MkdirAll(d, 0700); err != nil {
			return nil, err
		}
	}
	logPath := filepath.Join(nc.DataDir, "containerd", "containerd.log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0700); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config", cfg, "--address", ContainerdSocket, "--state", containerdState, "--root", containerdRoot)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The lab's k3s may run as a systemd unit: containerd must not answer its notify socket.
	cmd.Env = withoutEnv(os.Environ(), "NOTIFY_SOCKET")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting containerd: %w", err)
	}
	logrus.Infof("Running containerd %s (pid %d, log %s)", bin, cmd.Process.Pid, logPath)
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		logf.Close()
		exited <- fmt.Errorf("containerd exited: %v (see %s)", err, logPath)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.DialTimeout("unix", ContainerdSocket, time.Second); err == nil {
			c.Close()
			return exited, nil
		}
		select {
		case err := <-exited:
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("containerd's socket %s did not answer within 60 s (see %s)", ContainerdSocket, logPath)
		}
	}
}

func withoutEnv(env []string, key string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, key+"=") {
			out = append(out, e)
		}
	}
	return out
}

// importImages imports every image archive in DATA_DIR/agent/images into
// containerd's k8s.io namespace, as k3s does at each start (its air-gap
// path). .tar and .tar.gz/.tgz are read; other files are skipped with a
// warning. Uses Debian's ctr (k3s links containerd's client instead).
func (nc *NodeConfig) importImages(ctx context.Context) error {
	dir := filepath.Join(nc.DataDir, "images")
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(dir, n)
		var compressed bool
		switch {
		case strings.HasSuffix(n, ".tar"):
		case strings.HasSuffix(n, ".tar.gz"), strings.HasSuffix(n, ".tgz"):
			compressed = true
		default:
			logrus.Warnf("Skipping %s: the lab's k3s imports .tar and .tar.gz image archives", p)
			continue
		}
		start := time.Now()
		if err := ctrImport(ctx, p, compressed); err != nil {
			return fmt.Errorf("importing images from %s: %w", p, err)
		}
		logrus.Infof("Imported images from %s in %s", p, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

func ctrImport(ctx context.Context, path string, compressed bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var in io.Reader = f
	if compressed {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		defer gz.Close()
		in = gz
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ictx, "ctr", "--address", ContainerdSocket, "--namespace", "k8s.io", "images", "import", "-")
	cmd.Stdin = in
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr images import: %v: %s", err, strings.TrimSpace(string(out)))
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			logrus.Debugf("ctr: %s", l)
		}
	}
	return nil
}
