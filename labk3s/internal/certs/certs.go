// Package certs generates the CAs and leaf certificates of the lab's k3s.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// KeyPair is a PEM encoded certificate and key.
type KeyPair struct {
	CertPEM []byte
	KeyPEM  []byte
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, nil, err
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

// NewCA creates a self-signed CA valid for 10 years (like k3s).
func NewCA(cn string) (*KeyPair, error) {
	k, keyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("%s@%d", cn, now.Unix())},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		return nil, err
	}
	return &KeyPair{CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM: keyPEM}, nil
}

// Parse decodes a key pair.
func (kp *KeyPair) Parse() (*x509.Certificate, crypto.Signer, error) {
	cb, _ := pem.Decode(kp.CertPEM)
	if cb == nil {
		return nil, nil, errors.New("no certificate PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	kb, _ := pem.Decode(kp.KeyPEM)
	if kb == nil {
		return nil, nil, errors.New("no key PEM")
	}
	var key crypto.Signer
	switch kb.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default:
		var k interface{}
		k, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
		if err == nil {
			key = k.(crypto.Signer)
		}
	}
	return cert, key, err
}

// Leaf describes a certificate to sign.
type Leaf struct {
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []net.IP
	Server       bool
	Client       bool
}

// Sign issues a leaf certificate valid for 1 year (k3s: 1 year, renewed on restart).
func (ca *KeyPair) Sign(l Leaf) (*KeyPair, error) {
	caCert, caKey, err := ca.Parse()
	if err != nil {
		return nil, err
	}
	k, keyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	var eku []x509.ExtKeyUsage
	if l.Server {
		eku = append(eku, x509.ExtKeyUsageServerAuth)
	}
	if l.Client {
		eku = append(eku, x509.ExtKeyUsageClientAuth)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: l.CommonName, Organization: l.Organization},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  eku,
		DNSNames:     l.DNSNames,
		IPAddresses:  l.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, k.Public(), caKey)
	if err != nil {
		return nil, err
	}
	return &KeyPair{CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM: keyPEM}, nil
}

// NewServiceAccountKey returns an RSA private key PEM (PKCS#1) for service account tokens.
func NewServiceAccountKey() ([]byte, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), nil
}

// Hash is the hex sha256 of a CA bundle, as used in K10 tokens.
func Hash(caPEM []byte) string {
	h := sha256.Sum256(caPEM)
	return hex.EncodeToString(h[:])
}

// RenewWithin is how close to its expiry a leaf certificate is re-issued at
// start, as k3s does ("expired, or within 120 days of expiring"); until then
// a restart keeps the certificates, and with them the kubeconfigs.
const RenewWithin = 120 * 24 * time.Hour

// Keeps reports whether have, an earlier leaf, can stay in place of a new one
// for l: signed by this CA, for the same names and addresses and identity,
// and not within RenewWithin of its expiry at now.
func (ca *KeyPair) Keeps(have *KeyPair, l Leaf, now time.Time) bool {
	if have == nil || len(have.CertPEM) == 0 || len(have.KeyPEM) == 0 {
		return false
	}
	cert, key, err := have.Parse()
	if err != nil || key == nil {
		return false
	}
	caCert, _, err := ca.Parse()
	if err != nil || cert.CheckSignatureFrom(caCert) != nil {
		return false
	}
	if now.Add(RenewWithin).After(cert.NotAfter) || now.Before(cert.NotBefore) {
		return false
	}
	if cert.Subject.CommonName != l.CommonName || !sameStrings(cert.Subject.Organization, l.Organization) || !sameStrings(cert.DNSNames, l.DNSNames) {
		return false
	}
	var got, want []string
	for _, ip := range cert.IPAddresses {
		got = append(got, ip.String())
	}
	for _, ip := range l.IPs {
		want = append(want, ip.String())
	}
	return sameStrings(got, want)
}

func sameStrings(a, b []string) bool {
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		seen[s]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}
