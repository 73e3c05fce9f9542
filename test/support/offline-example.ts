import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { homeWithKeys } from './home.js';

/**
 * A cluster file made usable without a network: k3s from a small local file
 * standing in for the binary (install.source: local), and MetalLB from a
 * local manifest pinned by its sha256. Everything else as in the original.
 */

/** The parts of MetalLB's release manifest the simulation looks at. */
export const TEST_METALLB_MANIFEST = `apiVersion: v1
kind: Namespace
metadata: {name: metallb-system}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: controller, namespace: metallb-system}
spec:
  template:
    spec:
      containers:
        - {name: controller, image: quay.io/metallb/controller:v0.14.9}
`;

export interface OfflineCluster {
  /** The cluster file written in `dir`. */
  file: string;
  /** Its text. */
  text: string;
  /** The stand-in k3s binary. */
  binary: string;
  manifest: string;
}

/** Copy `source` (a cluster file) into `dir` as `name`, installing k3s and MetalLB from local files. */
export function offlineCluster(source: string | { text: string }, dir: string, name = 'cluster.yaml'): OfflineCluster {
  const binary = join(dir, 'k3s');
  // The CLI tests run with HOME set to `dir`: the examples' ~/.ssh/id_ed25519 lives there.
  homeWithKeys(dir);
  const manifest = join(dir, 'metallb-native.yaml');
  writeFileSync(manifest, TEST_METALLB_MANIFEST);
  const doc = parseDocument(typeof source === 'string' ? readFileSync(source, 'utf8') : source.text);
  // validate asks a local binary for its version: the stand-in answers with the pinned one.
  writeFileSync(binary, standInK3s(String(doc.getIn(['k3s', 'version']) ?? 'v1.31.4+k3s1')), { mode: 0o755 });
  doc.setIn(['k3s', 'install'], doc.createNode({ source: 'local', path: binary }));
  if (doc.hasIn(['metallb'])) {
    doc.setIn(['metallb', 'manifest'], doc.createNode({ file: manifest, sha256: createHash('sha256').update(TEST_METALLB_MANIFEST).digest('hex') }));
  }
  const text = doc.toString();
  const file = join(dir, name);
  writeFileSync(file, text);
  return { file, text, binary, manifest };
}

/** A script standing in for the k3s binary: it answers `--version` as k3s does, nothing else. */
export function standInK3s(version: string, note = 'stands in for the k3s binary'): string {
  return `#!/bin/sh\n# ${note}\necho "k3s version ${version} (stand-in)"\n`;
}

/** The release a standInK3s script (or any text naming one) reports, or undefined. */
export function standInVersion(script: string | null | undefined): string | undefined {
  return /v\d+\.\d+\.\d+\+k3s\d+/.exec(script ?? '')?.[0];
}
