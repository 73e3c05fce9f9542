// Command mkimage writes a one-layer container image archive from local
// files, for the lab, where no registry is reachable. The archive holds both
// an OCI image layout (oci-layout, index.json, blobs/sha256/...) and the
// `docker save` manifest.json beside it, as `docker save` does since 25.0:
// `ctr images import`, k3s's air-gap images folder and containerd's CRI
// all read it, and the image is named by its tag in both.
//
//	mkimage --tag registry.k8s.io/pause:3.10.2 --out pause.tar \
//	  --file ./pause=/pause --entrypoint /pause
//
// The layer is an uncompressed tar with every timestamp at 0 and owner
// root, so the same inputs give the same image digest.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

type entry struct {
	dst    string
	src    string // file content from here
	target string // symlink target
	dir    bool
	mode   int64
}

func main() {
	var tag, out, workdir, user string
	var files, dirs, links, entrypoint, cmd, env, ports list
	flag.StringVar(&tag, "tag", "", "image name:tag (required)")
	flag.StringVar(&out, "out", "", "archive to write (required)")
	flag.StringVar(&workdir, "workdir", "/", "working directory")
	flag.StringVar(&user, "user", "", "user (uid[:gid]) the process runs as")
	flag.Var(&files, "file", "SRC=DST: a file (mode kept from SRC); repeatable")
	flag.Var(&dirs, "dir", "DST: an empty directory (0755); repeatable")
	flag.Var(&links, "symlink", "DST=TARGET: a symbolic link; repeatable")
	flag.Var(&entrypoint, "entrypoint", "one word of the entrypoint; repeatable")
	flag.Var(&cmd, "cmd", "one word of the default command; repeatable")
	flag.Var(&env, "env", "KEY=VALUE; repeatable")
	flag.Var(&ports, "expose", "PORT/PROTO; repeatable")
	flag.Parse()
	if tag == "" || out == "" || !strings.Contains(tag, ":") {
		fmt.Fprintln(os.Stderr, "mkimage: --tag NAME:TAG and --out FILE are required")
		os.Exit(2)
	}
	var entries []entry
	for _, f := range files {
		src, dst, ok := strings.Cut(f, "=")
		if !ok {
			fail("--file %q: expected SRC=DST", f)
		}
		st, err := os.Stat(src)
		if err != nil {
			fail("--file %s: %v", src, err)
		}
		entries = append(entries, entry{dst: dst, src: src, mode: int64(st.Mode().Perm())})
	}
	for _, d := range dirs {
		entries = append(entries, entry{dst: d, dir: true, mode: 0o755})
	}
	for _, l := range links {
		dst, target, ok := strings.Cut(l, "=")
		if !ok {
			fail("--symlink %q: expected DST=TARGET", l)
		}
		entries = append(entries, entry{dst: dst, target: target, mode: 0o777})
	}
	layer, err := buildLayer(entries)
	if err != nil {
		fail("%v", err)
	}
	if err := writeArchive(out, tag, layer, imageConfig(layer, entrypoint, cmd, env, ports, workdir, user)); err != nil {
		fail("%v", err)
	}
}

func fail(f string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "mkimage: "+f+"\n", a...)
	os.Exit(1)
}

// buildLayer writes parents before children, each directory once.
func buildLayer(entries []entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	made := map[string]bool{}
	var mkdirs func(p string) error
	mkdirs = func(p string) error {
		if p == "/" || p == "." || p == "" || made[p] {
			return nil
		}
		if err := mkdirs(path.Dir(p)); err != nil {
			return err
		}
		made[p] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/", Mode: 0o755, ModTime: time.Unix(0, 0), Format: tar.FormatPAX})
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].dst < entries[j].dst })
	for _, e := range entries {
		dst := path.Clean("/" + e.dst)
		if err := mkdirs(path.Dir(dst)); err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(dst, "/")
		h := &tar.Header{Name: name, Mode: e.mode, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		switch {
		case e.dir:
			if made[dst] {
				continue
			}
			made[dst] = true
			h.Typeflag, h.Name = tar.TypeDir, name+"/"
			if err := tw.WriteHeader(h); err != nil {
				return nil, err
			}
		case e.target != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.target
			if err := tw.WriteHeader(h); err != nil {
				return nil, err
			}
		default:
			b, err := os.ReadFile(e.src)
			if err != nil {
				return nil, err
			}
			h.Typeflag, h.Size = tar.TypeReg, int64(len(b))
			if err := tw.WriteHeader(h); err != nil {
				return nil, err
			}
			if _, err := tw.Write(b); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func imageConfig(layer []byte, entrypoint, cmd, env, ports []string, workdir, user string) []byte {
	exposed := map[string]struct{}{}
	for _, p := range ports {
		exposed[p] = struct{}{}
	}
	if len(env) == 0 {
		env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	cfg := map[string]interface{}{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      time.Unix(0, 0).UTC().Format(time.RFC3339),
		"config": map[string]interface{}{
			"Entrypoint": entrypoint, "Cmd": cmd, "Env": env, "WorkingDir": workdir, "User": user, "ExposedPorts": exposed,
		},
		"rootfs":  map[string]interface{}{"type": "layers", "diff_ids": []string{digest(layer)}},
		"history": []map[string]interface{}{{"created": time.Unix(0, 0).UTC().Format(time.RFC3339), "created_by": "k8s-ha lab mkimage"}},
	}
	b, _ := json.Marshal(cfg)
	return b
}

func writeArchive(out, tag string, layer, config []byte) error {
	ld, cd := digest(layer), digest(config)
	manifest, _ := json.Marshal(map[string]interface{}{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]interface{}{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(config)},
		"layers":        []map[string]interface{}{{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": len(layer)}},
	})
	md := digest(manifest)
	_, ref, _ := strings.Cut(tag[strings.LastIndex(tag, "/")+1:], ":")
	index, _ := json.Marshal(map[string]interface{}{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []map[string]interface{}{{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": len(manifest),
			"annotations": map[string]string{"io.containerd.image.name": tag, "org.opencontainers.image.ref.name": ref},
		}},
	})
	blob := func(d string) string { return "blobs/sha256/" + strings.TrimPrefix(d, "sha256:") }
	dockerManifest, _ := json.Marshal([]map[string]interface{}{{"Config": blob(cd), "RepoTags": []string{tag}, "Layers": []string{blob(ld)}}})

	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	add := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
	}
	for _, p := range []struct {
		name string
		b    []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{blob(ld), layer}, {blob(cd), config}, {blob(md), manifest},
		{"index.json", index}, {"manifest.json", dockerManifest},
	} {
		if err := add(p.name, p.b); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
