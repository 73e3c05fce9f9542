package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/k8s-ha/labk3s/internal/bootstrap"
	"github.com/k8s-ha/labk3s/internal/certs"
	"github.com/k8s-ha/labk3s/internal/cli"
	"github.com/k8s-ha/labk3s/internal/nodepassword"
	"github.com/k8s-ha/labk3s/internal/util"
)

// RunAgent runs "k3s agent": fetch and verify the cluster CA, obtain a node
// client certificate, register the Node and simulate its kubelet with kwok.
func RunAgent(ctx context.Context, o *cli.Options) error {
	server := strings.TrimRight(o.String("server"), "/")
	if server == "" {
		return errors.New("k3s agent: --server (K3S_URL) is required, e.g. https://LB:6443")
	}
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("k3s agent: invalid server URL %q (expected https://HOST:6443)", server)
	}
	tok := o.String("token")
	if tok == "" && o.String("token-file") != "" {
		b, err := os.ReadFile(o.String("token-file"))
		if err != nil {
			return fmt.Errorf("reading token-file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		return errors.New("k3s agent: token (K3S_TOKEN) is required")
	}
	t, err := bootstrap.ParseToken(tok)
	if err != nil {
		return err
	}
	name := o.String("node-name")
	if name == "" {
		name = util.Hostname()
	}
	ips := o.List("node-ip")
	if len(ips) == 0 {
		ips = []string{util.DefaultIP()}
	}
	agentDir := filepath.Join(o.String("data-dir"), "agent")
	// the node's password, made on its first start and kept across
	// uninstalls (k3s#802): the servers refuse this name to another machine
	passFile := nodepassword.File()
	pass, err := nodepassword.EnsureFile(passFile)
	if err != nil {
		return fmt.Errorf("node password %s: %w", passFile, err)
	}
	id := nodeIdentity{name: name, password: pass, file: passFile}
	// Like k3s: systemd hears READY=1 from the agent once its node is
	// registered, never from the kubelet inside (it would say so early).
	notify := TakeNotifySocket()
	nc := NodeConfigFromOptions(o, name, ips, agentDir)
	nc.Kubeconfig = filepath.Join(agentDir, "kubelet.kubeconfig")
	nc.ProxyKubeconfig = filepath.Join(agentDir, "kubeproxy.kubeconfig")
	nc.ClientCAFile = filepath.Join(agentDir, "client-ca.crt")
	nc.OnRegistered = func(context.Context) { notify("READY=1") }
	if err := nc.Validate(); err != nil {
		return err
	}
	if noops := o.NoOps(); len(noops) > 0 {
		logrus.Infof("Accepted but not used by the lab's k3s: %s", strings.Join(noops, "; "))
	}

	var caPEM []byte
	for {
		caPEM, err = fetchCA(ctx, server, t)
		if err == nil {
			break
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return err
		}
		logrus.Warnf("Waiting for server %s: %v", server, err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	certKey, err := fetchAuthed(ctx, server, caPEM, t, id, "/v1-k3s/client-kubelet.crt")
	if err != nil {
		return err
	}
	certPEM, keyPEM := splitPEM(certKey)
	if err := util.WriteFile(filepath.Join(agentDir, "server-ca.crt"), caPEM, 0644); err != nil {
		return err
	}
	if !nc.Simulated {
		// The kubelet's client CA, kube-proxy's identity and the cluster's
		// settings, from the server, as a k3s agent gets them.
		clientCA, err := fetchAuthed(ctx, server, caPEM, t, id, "/v1-k3s/client-ca.crt")
		if err != nil {
			return err
		}
		if err := util.WriteFile(nc.ClientCAFile, clientCA, 0644); err != nil {
			return err
		}
		proxyCertKey, err := fetchAuthed(ctx, server, caPEM, t, id, "/v1-k3s/client-kube-proxy.crt")
		if err != nil {
			return err
		}
		pc, pk := splitPEM(proxyCertKey)
		pkc, err := util.Kubeconfig(server, caPEM, pc, pk)
		if err != nil {
			return err
		}
		if err := util.WriteFile(nc.ProxyKubeconfig, pkc, 0600); err != nil {
			return err
		}
		cfgJSON, err := fetchAuthed(ctx, server, caPEM, t, id, "/v1-k3s/config")
		if err != nil {
			return err
		}
		if err := json.Unmarshal(cfgJSON, &nc.Cluster); err != nil {
			return fmt.Errorf("the server's /v1-k3s/config: %w", err)
		}
	}
	if err := util.WriteFile(filepath.Join(agentDir, "client-kubelet.crt"), certPEM, 0644); err != nil {
		return err
	}
	if err := util.WriteFile(filepath.Join(agentDir, "client-kubelet.key"), keyPEM, 0600); err != nil {
		return err
	}
	kc, err := util.Kubeconfig(server, caPEM, certPEM, keyPEM)
	if err != nil {
		return err
	}
	if err := util.WriteFile(nc.Kubeconfig, kc, 0600); err != nil {
		return err
	}
	logrus.Infof("Obtained node credentials for %s from %s", name, server)
	return Run(ctx, nc)
}

type fatalError struct{ error }

// passwordRefused: a server holds another password for this node name.
type passwordRefused struct{ file string }

func (e *passwordRefused) Error() string { return nodepassword.RejectedMessage(e.file) }

func fetchCA(ctx context.Context, server string, t bootstrap.Token) ([]byte, error) {
	// like k3s: the CA is fetched without verification and then checked
	// against the hash in the (K10) token.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // verified by hash below
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, server+"/cacerts", nil)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /cacerts: %s", resp.Status)
	}
	if t.CAHash != "" {
		if h := certs.Hash(body); h != t.CAHash {
			return nil, &fatalError{fmt.Errorf("token CA hash does not match the Cluster CA certificate hash: %s != %s", t.CAHash, h)}
		}
	} else {
		logrus.Warnf("Token is not in K10 format: the cluster CA from %s is trusted without verification", server)
	}
	return body, nil
}

// fetchAuthed GETs a k3s supervisor path with the node token, retrying
// until the server answers (a rejected token is fatal).
func fetchAuthed(ctx context.Context, server string, caPEM []byte, t bootstrap.Token, id nodeIdentity, path string) ([]byte, error) {
	for {
		b, err := fetchOnce(ctx, server, caPEM, t, id, path)
		if err == nil {
			return b, nil
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return nil, err
		}
		wait := 2 * time.Second
		var refused *passwordRefused
		if errors.As(err, &refused) {
			// k3s's words, retried as k3s retries them (every 5 s, forever)
			logrus.Infof("Waiting to retrieve agent configuration; server is not ready: %v", err)
			wait = 5 * time.Second
		} else {
			logrus.Warnf("Waiting for %s from %s: %v", path, server, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// nodeIdentity is what a node asks a server with: its name and its password (from file).
type nodeIdentity struct{ name, password, file string }

func fetchOnce(ctx context.Context, server string, caPEM []byte, t bootstrap.Token, id nodeIdentity, path string) ([]byte, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, &fatalError{errors.New("invalid cluster CA")}
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, server+path, nil)
	req.SetBasicAuth("node", t.Password)
	req.Header.Set(nodepassword.NameHeader, id.name)
	req.Header.Set(nodepassword.PasswordHeader, id.password)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return body, nil
	case http.StatusUnauthorized:
		return nil, &fatalError{fmt.Errorf("server %s rejected the token (401)", server)}
	case http.StatusForbidden:
		return nil, &passwordRefused{file: id.file}
	default:
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
}

func splitPEM(b []byte) (certPEM, keyPEM []byte) {
	s := string(b)
	i := strings.Index(s, "-----BEGIN EC PRIVATE KEY-----")
	if i < 0 {
		i = strings.Index(s, "-----BEGIN RSA PRIVATE KEY-----")
	}
	if i < 0 {
		return b, nil
	}
	return []byte(s[:i]), []byte(s[i:])
}
