package nodepassword

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestHashVerify(t *testing.T) {
	h, err := Hash("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\$1:[0-9a-f]{16}:15:8:1:[A-Za-z0-9+/]{86}$`).MatchString(h) {
		t.Fatalf("hash format: %s", h)
	}
	if err := Verify(h, "s3cret"); err != nil {
		t.Fatalf("right password refused: %v", err)
	}
	if err := Verify(h, "other"); err == nil {
		t.Fatal("wrong password accepted")
	}
	if err := Verify("$1:zz:15:8:1:abc", "s3cret"); err == nil {
		t.Fatal("malformed hash accepted")
	}
	h2, _ := Hash("s3cret")
	if h2 == h {
		t.Fatal("two hashes of one password share a salt")
	}
}

func TestEnsureFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "etc", "rancher", "node", "password")
	p, err := EnsureFile(f)
	if err != nil || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(p) {
		t.Fatalf("made %q, %v", p, err)
	}
	st, _ := os.Stat(f)
	if st.Mode().Perm() != 0600 {
		t.Fatalf("mode %v", st.Mode())
	}
	again, _ := EnsureFile(f)
	if again != p {
		t.Fatal("a second start changed the password")
	}
	if SecretName("Agent1") != "agent1.node-password.k3s" {
		t.Fatal(SecretName("Agent1"))
	}
}
