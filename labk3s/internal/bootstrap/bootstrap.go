// Package bootstrap stores the cluster's CAs and keys in the datastore,
// encrypted with a key derived from the token, the way k3s does
// (pbkdf2 + AES-GCM under /bootstrap/<hash of token>).
package bootstrap

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const Prefix = "/bootstrap/"

// ErrDifferentToken is returned when bootstrap data exists that this token cannot decrypt.
var ErrDifferentToken = errors.New("bootstrap data already found and encrypted with different token")

// Token is a parsed k3s token.
type Token struct {
	CAHash   string // hex sha256 of the server CA, empty for a short token
	Username string // "server" or "node"
	Password string // the secret
}

// ParseToken parses "K10<hash>::<user>:<password>" or a plain secret.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, errors.New("empty token")
	}
	if strings.HasPrefix(s, "K10") {
		rest := s[3:]
		i := strings.Index(rest, "::")
		if i < 0 {
			return Token{}, errors.New("invalid token format: K10 token without '::'")
		}
		hash, cred := rest[:i], rest[i+2:]
		user, pass, ok := strings.Cut(cred, ":")
		if !ok || pass == "" {
			return Token{}, errors.New("invalid token format: expected K10<hash>::<user>:<password>")
		}
		if _, err := hex.DecodeString(hash); err != nil || len(hash) != 64 {
			return Token{}, errors.New("invalid token format: CA hash is not a sha256 hex digest")
		}
		return Token{CAHash: hash, Username: user, Password: pass}, nil
	}
	return Token{Username: "server", Password: s}, nil
}

// Full renders the token in k3s's secure format.
func Full(caHash, password string) string {
	return "K10" + caHash + "::server:" + password
}

// Key returns the datastore key for a passphrase (k3s: first 12 hex of sha256).
func Key(passphrase string) string {
	h := sha256.Sum256([]byte(passphrase))
	return Prefix + hex.EncodeToString(h[:])[:12]
}

func deriveKey(passphrase string, salt []byte) ([]byte, error) {
	return pbkdf2.Key(sha1.New, passphrase, salt, 4096, 32)
}

// Encrypt seals data: base64(salt) ":" base64(nonce||ciphertext).
func Encrypt(passphrase string, plaintext []byte) ([]byte, error) {
	salt := make([]byte, 8)
	if _, err := io.ReadFull(rand.Reader, salt); err != nil {
		return nil, err
	}
	key, err := deriveKey(passphrase, salt)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, err
	}
	sealed := gcm.Seal(nonce, nonce, plaintext, nil)
	return []byte(base64.StdEncoding.EncodeToString(salt) + ":" + base64.StdEncoding.EncodeToString(sealed)), nil
}

// Decrypt opens data sealed by Encrypt.
func Decrypt(passphrase string, data []byte) ([]byte, error) {
	parts := strings.SplitN(string(data), ":", 2)
	if len(parts) != 2 {
		return nil, errors.New("invalid encrypted bootstrap data")
	}
	salt, err := base64.StdEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, err
	}
	sealed, err := base64.StdEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	key, err := deriveKey(passphrase, salt)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(sealed) < gcm.NonceSize() {
		return nil, errors.New("invalid encrypted bootstrap data")
	}
	return gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], nil)
}

// Data is the shared cluster state (file name -> PEM content).
type Data map[string][]byte

// Load reads and decrypts the bootstrap data for passphrase, or, when none
// exists yet, stores the data produced by create. It fails with
// ErrDifferentToken when bootstrap data exists under another token.
// The boolean is true when this call created the data.
func Load(ctx context.Context, cli *clientv3.Client, passphrase string, create func() (Data, error)) (Data, bool, error) {
	key := Key(passphrase)
	for attempt := 0; attempt < 5; attempt++ {
		resp, err := cli.Get(ctx, Prefix, clientv3.WithPrefix())
		if err != nil {
			return nil, false, fmt.Errorf("reading bootstrap data from datastore: %w", err)
		}
		var other bool
		for _, kv := range resp.Kvs {
			if string(kv.Key) != key {
				other = true
				continue
			}
			plain, err := Decrypt(passphrase, kv.Value)
			if err != nil {
				return nil, false, fmt.Errorf("%w: %v", ErrDifferentToken, err)
			}
			d := Data{}
			if err := json.Unmarshal(plain, &d); err != nil {
				return nil, false, fmt.Errorf("decoding bootstrap data: %w", err)
			}
			return d, false, nil
		}
		if other {
			return nil, false, ErrDifferentToken
		}
		d, err := create()
		if err != nil {
			return nil, false, err
		}
		plain, err := json.Marshal(d)
		if err != nil {
			return nil, false, err
		}
		sealed, err := Encrypt(passphrase, plain)
		if err != nil {
			return nil, false, err
		}
		txn, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(sealed))).
			Commit()
		if err != nil {
			return nil, false, fmt.Errorf("writing bootstrap data to datastore: %w", err)
		}
		if txn.Succeeded {
			return d, true, nil
		}
		// another server won the race: read its data
		time.Sleep(time.Second)
	}
	return nil, false, errors.New("could not read or write bootstrap data")
}
