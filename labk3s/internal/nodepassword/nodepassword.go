// Package nodepassword is the lab's k3s's node-password check, which real
// k3s has since k3s#802: every node keeps a random password in
// /etc/rancher/node/password (made by the node when absent) and sends it
// with its name when it asks a server for its kubelet certificate; the
// servers keep an scrypt hash of it in the Secret NAME.node-password.k3s in
// kube-system (type k3s.cattle.io/node-password, immutable), made the first
// time a name is seen. Another password for a name that has a Secret is
// refused, so a second machine cannot take over a node's identity. Deleting
// the Node deletes the Secret (controller.go), so a machine can join again
// under that name. Written from k3s's documented behaviour and its
// pkg/nodepassword and pkg/agent/config (read, not copied).
package nodepassword

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/crypto/scrypt"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// DefaultFile is where k3s keeps a node's password (kept by its uninstall scripts).
const DefaultFile = "/etc/rancher/node/password"

// SecretType is the type k3s gives node-password Secrets.
const SecretType corev1.SecretType = "k3s.cattle.io/node-password"

// Header names of the supervisor requests that carry a node's identity.
const (
	NameHeader     = "K3s-Node-Name"
	PasswordHeader = "K3s-Node-Password"
)

// File is the node's password file: DefaultFile, or LABK3S_NODE_PASSWORD_FILE
// (only for loopback tests that run several nodes on the developer's host,
// which must not write the host's /etc).
func File() string {
	if f := os.Getenv("LABK3S_NODE_PASSWORD_FILE"); f != "" {
		return f
	}
	return DefaultFile
}

// RejectedMessage is what a k3s agent logs when a server refuses its password.
func RejectedMessage(file string) string {
	return fmt.Sprintf("Node password rejected, duplicate hostname or contents of '%s' may not match server node-passwd entry, try enabling a unique node name with the --with-node-id flag", file)
}

// EnsureFile returns the password in file, creating it (16 random bytes,
// hex, mode 0600, its folder 0755) when there is none, as a k3s node does.
func EnsureFile(file string) (string, error) {
	if b, err := os.ReadFile(file); err == nil {
		p := strings.TrimSpace(string(b))
		if p == "" {
			return "", fmt.Errorf("node password file %s is empty", file)
		}
		return p, nil
	} else if !os.IsNotExist(err) {
		return "", err
	}
	r := make([]byte, 16)
	if _, err := rand.Read(r); err != nil {
		return "", err
	}
	p := hex.EncodeToString(r)
	if err := os.MkdirAll(filepath.Dir(file), 0755); err != nil {
		return "", err
	}
	if err := os.WriteFile(file, []byte(p+"\n"), 0600); err != nil {
		return "", err
	}
	return p, nil
}

// SecretName is the Secret that holds the hash for a node name.
func SecretName(node string) string { return strings.ToLower(node) + ".node-password.k3s" }

// scrypt parameters as k3s uses them: N=2^15, r=8, p=1, 64-byte key, 8-byte salt.
const (
	logN   = 15
	blockR = 8
	parP   = 1
	keyLen = 64
)

// Hash renders "$1:<salt hex>:<logN>:<r>:<p>:<key, unpadded base64>", k3s's format.
func Hash(pass string) (string, error) {
	salt := make([]byte, 8)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := scrypt.Key([]byte(pass), salt, 1<<logN, blockR, parP, keyLen)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("$1:%s:%d:%d:%d:%s", hex.EncodeToString(salt), logN, blockR, parP, base64.RawStdEncoding.EncodeToString(key)), nil
}

// Verify checks pass against a hash made by Hash.
func Verify(hash, pass string) error {
	f := strings.Split(strings.TrimPrefix(hash, "$"), ":")
	if len(f) != 6 || f[0] != "1" {
		return errors.New("not a version 1 scrypt hash")
	}
	salt, err1 := hex.DecodeString(f[1])
	n, err2 := strconv.Atoi(f[2])
	r, err3 := strconv.Atoi(f[3])
	p, err4 := strconv.Atoi(f[4])
	key, err5 := base64.RawStdEncoding.DecodeString(f[5])
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil || n < 1 || n > 24 {
		return fmt.Errorf("malformed scrypt hash: %v", err)
	}
	got, err := scrypt.Key([]byte(pass), salt, 1<<n, r, p, len(key))
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(got, key) != 1 {
		return errors.New("hash does not match")
	}
	return nil
}

// MismatchError: the node's password does not match its Secret.
type MismatchError struct {
	Node string
	Err  error
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("unable to verify password for node %s: %v", e.Node, e.Err)
}

func verifySecret(s *corev1.Secret, node, pass string) error {
	h, ok := s.Data["hash"]
	if !ok {
		return &MismatchError{Node: node, Err: errors.New("password hash not found in node secret")}
	}
	if err := Verify(string(h), pass); err != nil {
		return &MismatchError{Node: node, Err: err}
	}
	return nil
}

// Ensure verifies pass against the node's Secret, or creates the Secret
// when there is none. A *MismatchError means refuse the node; any other
// error means the check could not be made (the API did not answer).
func Ensure(ctx context.Context, cs kubernetes.Interface, node, pass string) error {
	secrets := cs.CoreV1().Secrets(metav1.NamespaceSystem)
	s, err := secrets.Get(ctx, SecretName(node), metav1.GetOptions{})
	if err == nil {
		return verifySecret(s, node, pass)
	}
	if !apierrors.IsNotFound(err) {
		return err
	}
	h, err := Hash(pass)
	if err != nil {
		return err
	}
	immutable := true
	_, err = secrets.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: SecretName(node), Namespace: metav1.NamespaceSystem},
		Immutable:  &immutable,
		Type:       SecretType,
		Data:       map[string][]byte{"hash": []byte(h)},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// another server made it first: check against that one
		if s, err = secrets.Get(ctx, SecretName(node), metav1.GetOptions{}); err != nil {
			return err
		}
		return verifySecret(s, node, pass)
	}
	return err
}

// IsMismatch says whether err is a refused password.
func IsMismatch(err error) bool {
	var m *MismatchError
	return errors.As(err, &m)
}
