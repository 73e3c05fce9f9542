package certs

import (
	"net"
	"testing"
	"time"
)

func TestKeepsALeafUntilNearExpiry(t *testing.T) {
	ca, err := NewCA("k3s-server-ca")
	if err != nil {
		t.Fatal(err)
	}
	l := Leaf{CommonName: "kube-apiserver", DNSNames: []string{"localhost", "kubernetes"}, IPs: []net.IP{net.ParseIP("10.0.0.21"), net.ParseIP("127.0.0.1")}, Server: true}
	kp, err := ca.Sign(l)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if !ca.Keeps(kp, l, now) {
		t.Fatal("a fresh leaf for the same names was not kept")
	}
	reordered := Leaf{CommonName: l.CommonName, DNSNames: []string{"kubernetes", "localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.21")}, Server: true}
	if !ca.Keeps(kp, reordered, now) {
		t.Fatal("the same names in another order made a new leaf")
	}
	moreSANs := l
	moreSANs.DNSNames = append([]string{"lb.example"}, l.DNSNames...)
	if ca.Keeps(kp, moreSANs, now) {
		t.Fatal("a leaf without a new tls-san name was kept")
	}
	if ca.Keeps(kp, l, now.Add(365*24*time.Hour-RenewWithin+time.Hour)) {
		t.Fatal("a leaf within RenewWithin of its expiry was kept")
	}
	other, _ := NewCA("k3s-server-ca")
	if other.Keeps(kp, l, now) {
		t.Fatal("a leaf of another CA was kept")
	}
	if ca.Keeps(&KeyPair{CertPEM: kp.CertPEM}, l, now) || ca.Keeps(nil, l, now) {
		t.Fatal("a leaf without its key was kept")
	}
	client := Leaf{CommonName: "system:node:a1", Organization: []string{"system:nodes"}, Client: true}
	ckp, _ := ca.Sign(client)
	if ca.Keeps(ckp, Leaf{CommonName: "system:node:a2", Organization: []string{"system:nodes"}, Client: true}, now) {
		t.Fatal("a client leaf for another identity was kept")
	}
}
