import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isDeepStrictEqual } from 'node:util';
import { parse as parseYaml, stringify } from 'yaml';
import type { Problem } from '../engine/errors.js';
import type { Change, Phase, RunContext } from '../engine/phase.js';
import type { Deployment } from '../cluster/deployment.js';
import { apiUnavailable, hostKubectl, type KubeItem, type KubeList, type Kubectl } from '../kube/kubectl-host.js';
import { K3S_CONFIG_PATH } from '../render/k3s.js';
import { MANAGED_BY_LABEL, METALLB_NAMESPACE, metallbObjects, type KubeObject, type MetallbInput } from '../render/metallb.js';
import type { Cluster } from '../spec/cluster.js';
import type { Host } from '../transport/host.js';

/**
 * SHA-256 of each known release's config/manifests/metallb-native.yaml
 * (PRODUCT.md: the pinned release is fetched with a checksum check). Taken
 * from the go.universe.tf/metallb module zip of the tag, which holds the
 * repository's files at the tag byte for byte (scripts/fetch-metallb.sh reads
 * this table). A version not listed needs metallb.manifest.sha256.
 */
export const METALLB_MANIFEST_SHA256: Readonly<Record<string, string>> = {
  'v0.14.9': '951065e85692aa106f1bb5d5a487d9306154923a794ab1d82122881cbaf588e4',
  'v0.15.3': '84b4e102f2b65f5d69085f5816c29362b74641873d8ac3de996e5f86a8219176',
  'v0.16.1': 'bf25feebb7582ca7df845efd52ffbc2960d6cbf4cfc972f47fded9f788b67f0b',
};

export const metallbManifestUrl = (version: string): string =>
  `https://raw.githubusercontent.com/metallb/metallb/${version}/config/manifests/metallb-native.yaml`;

/** Where k8s-ha records which manifest it applied, so a re-apply can tell it is already there. */
export const METALLB_RECORD = 'k8s-ha-metallb';
const FIELD_MANAGER = 'k8s-ha';
/** The changes' targets: stable names, so a plan and a later look compare (engine: changeKey). */
const MANIFEST_OBJECT = `${METALLB_NAMESPACE}/metallb-native.yaml`;
const OBJECTS_OBJECT = `${METALLB_NAMESPACE}/k8s-ha IPAddressPools and L2Advertisements`;

export interface MetallbPhaseOptions {
  /** Download the release manifest. Default: fetch() with a 60 s timeout. */
  fetchManifest?: (url: string) => Promise<Buffer>;
  /** Read metallb.manifest.file. Default: node:fs. */
  readLocal?: (path: string) => Promise<Buffer>;
  /** How long to wait for the controller and its webhook. Default: waits.metallbReady of the cluster file (5 m). */
  waitMs?: number;
  /** Between two tries while waiting. Default: 2000 ms. */
  pollMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

/** What the MetalLB phase reads from the first server (and every server's k3s config). */
export interface MetallbObserved {
  /** null when the API answered; otherwise why not (k3s not installed or not up yet). */
  apiDown: string | null;
  /** From the record ConfigMap: what k8s-ha applied last. */
  applied: { version: string; sha256: string } | null;
  /** The controller Deployment's image, when it exists (a hand upgrade shows here). */
  controllerImage: string | null;
  /** k8s-ha's IPAddressPools and L2Advertisements (by label), as `Kind/name` -> object. */
  objects: Map<string, KubeItem>;
  /** The manifest digest to have: pinned, given, or that of the local file. */
  wantSha256: string | null;
  /** servicelb as each server's config.yaml has it ('absent': k3s not configured yet). */
  servicelb: { host: string; state: 'disabled' | 'enabled' | 'absent' }[];
}

export function metallbInput(spec: Cluster): MetallbInput | null {
  const m = spec.metallb;
  if (!m) return null;
  return { pools: m.pools.map((p) => ({ ...p })), l2Advertisement: m.l2Advertisement };
}

/** servicelb's state in a k3s config.yaml (`disable` is a list, a string, or comma-separated). */
export function servicelbState(configYaml: string | null): 'disabled' | 'enabled' | 'absent' {
  if (configYaml === null) return 'absent';
  let doc: unknown;
  try {
    doc = parseYaml(configYaml);
  } catch {
    return 'enabled';
  }
  const d = doc && typeof doc === 'object' ? (doc as Record<string, unknown>).disable : undefined;
  const items = (Array.isArray(d) ? d : d === undefined ? [] : [d]).flatMap((x) => String(x).split(',')).map((s) => s.trim());
  return items.includes('servicelb') ? 'disabled' : 'enabled';
}

const servers = (spec: Cluster): string[] => spec.hosts.filter((h) => h.roles.includes('server')).map((h) => h.name);
const key = (o: { kind?: string; metadata: { name: string } }): string => `${o.kind}/${o.metadata.name}`;
const imageVersion = (image: string | null): string | null => (image ? (/:([^:@/]+)(@.*)?$/.exec(image)?.[1] ?? null) : null);

/**
 * Normalise before comparing (STYLE.md 3): only the fields k8s-ha sets count;
 * defaults the API server or MetalLB fill in (avoidBuggyIPs: false, ...) are
 * not a difference.
 */
export function objectDiffers(want: KubeObject, got: KubeItem | undefined): boolean {
  if (!got) return true;
  const spec = got.spec ?? {};
  for (const [k, v] of Object.entries(want.spec)) if (!isDeepStrictEqual(spec[k], v)) return true;
  for (const [k, v] of Object.entries(want.metadata.labels)) if (got.metadata.labels?.[k] !== v) return true;
  return false;
}

async function defaultFetch(url: string): Promise<Buffer> {
  const r = await fetch(url, { signal: AbortSignal.timeout(60_000) });
  if (!r.ok) throw new Error(`HTTP ${r.status} ${r.statusText}`);
  return Buffer.from(await r.arrayBuffer());
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * MetalLB, last in the pipeline: the release manifest applied on the first
 * server with `k3s kubectl apply --server-side`, a wait until the controller
 * is available and its validating webhook accepts the pools (FACTS: it
 * rejects them until then), then the IPAddressPools and L2Advertisement of
 * the cluster file. A re-apply compares the recorded manifest digest, the
 * controller's image and the objects' specs, and changes nothing when they
 * match.
 */
export function metallbPhase(o: MetallbPhaseOptions = {}): Phase<Deployment, MetallbObserved> {
  const fetchManifest = o.fetchManifest ?? defaultFetch;
  const readLocal = o.readLocal ?? ((p: string) => readFile(p));
  // waits.metallbReady of the cluster file (5 m), unless the caller sets one.
  const waitMsFor = (spec: Cluster): number => o.waitMs ?? spec.waits.metallbReadyMs;
  const pollMs = o.pollMs ?? 2_000;
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));

  /** The manifest's bytes, refused unless they hash to the expected digest. */
  async function loadManifest(spec: Cluster, want: string | null): Promise<Buffer> {
    const m = spec.metallb!;
    const file = m.manifest?.file;
    let body: Buffer;
    if (file) {
      body = await readLocal(file).catch((e: Error) => {
        throw new Error(`metallb.manifest.file ${file}: ${e.message}; give the path of metallb-native.yaml of ${m.version} (scripts/fetch-metallb.sh can make one)`);
      });
    } else {
      const url = metallbManifestUrl(m.version);
      body = await fetchManifest(url).catch((e: Error) => {
        throw new Error(`downloading ${url}: ${e.message}; without internet access, set metallb.manifest.file to a local copy of the release's metallb-native.yaml`);
      });
    }
    const got = sha256(body);
    if (want && got !== want) {
      throw new Error(
        `the MetalLB ${m.version} manifest${file ? ` ${file}` : ''} has sha256 ${got}, expected ${want}: refusing to apply it; ` +
          (m.manifest?.sha256 ? 'check metallb.manifest.sha256 and the file' : `use the release's own metallb-native.yaml, or set metallb.manifest.sha256 if you mean a different file`),
      );
    }
    return body;
  }

  /** Every server's servicelb state, read now (the gate right before MetalLB goes on). */
  async function servicelbOnServers(ctx: RunContext<Deployment>): Promise<MetallbObserved['servicelb']> {
    return Promise.all(
      servers(ctx.cluster.spec).map(async (name) => {
        const h = await ctx.host(name);
        const buf = await h.readFile(K3S_CONFIG_PATH);
        return { host: name, state: servicelbState(buf ? buf.toString('utf8') : null) };
      }),
    );
  }

  /** Poll until the controller Deployment is Available and the webhook accepts a dry run of the objects. */
  async function waitReady(k: Kubectl, objectsYaml: string, waitMs: number): Promise<void> {
    const deadline = Date.now() + waitMs;
    let last = '';
    for (;;) {
      const d = await k.run(['get', '-n', METALLB_NAMESPACE, 'deployment/controller', '-o', 'jsonpath={.status.conditions[?(@.type=="Available")].status}'], { allowFailure: true });
      if (d.code === 0 && d.stdout.trim() === 'True') {
        // The webhook answers only once its certificate is in place, some time after
        // the pod is Ready: a server-side dry run goes through the webhook without storing anything.
        const dry = await k.run(['apply', '--server-side', `--field-manager=${FIELD_MANAGER}`, '--dry-run=server', '-f', '-'], { stdin: objectsYaml, allowFailure: true });
        if (dry.code === 0) return;
        if (/denied the request/.test(dry.stderr)) {
          throw new Error(`MetalLB's webhook rejected the configuration: ${dry.stderr.trim()}; fix metallb.pools in the cluster file`);
        }
        last = `the webhook does not accept objects yet: ${dry.stderr.trim().split('\n').pop() ?? ''}`;
      } else {
        last = d.code === 0 ? 'the controller Deployment is not Available yet' : d.stderr.trim().split('\n').pop() ?? '';
      }
      if (Date.now() >= deadline) {
        throw new Error(
          `MetalLB's controller or webhook was not ready within ${Math.round(waitMs / 1000)} s (${last}); the bound is waits.metallbReady; ` +
            `look at \`k3s kubectl -n ${METALLB_NAMESPACE} get pods\` and \`k3s kubectl -n ${METALLB_NAMESPACE} logs deploy/controller\`, then run apply again`,
        );
      }
      await sleep(pollMs);
    }
  }

  return {
    id: 'metallb',
    title: 'MetalLB',
    targets: (ctx) => (ctx.cluster.spec.metallb ? servers(ctx.cluster.spec).slice(0, 1) : []),

    async observe(ctx, host: Host): Promise<MetallbObserved> {
      const spec = ctx.cluster.spec;
      const m = spec.metallb!;
      // A local copy of a known release is held to the pinned digest too (a copy is
      // the release as published); only an explicit sha256 accepts another file.
      const wantSha256 = m.manifest?.sha256 ?? METALLB_MANIFEST_SHA256[m.version] ?? (m.manifest?.file ? sha256(await loadManifest(spec, null)) : null);
      const servicelb = await servicelbOnServers(ctx);
      const k = hostKubectl(host);
      const base = { wantSha256, servicelb, applied: null, controllerImage: null, objects: new Map<string, KubeItem>() };
      const r = await k.run(['get', '-n', METALLB_NAMESPACE, `configmap/${METALLB_RECORD}`, 'deployment/controller', '--ignore-not-found', '-o', 'json'], { allowFailure: true });
      if (r.code !== 0) {
        if (apiUnavailable(r)) return { ...base, apiDown: r.stderr.trim().split('\n').pop() || `exit ${r.code}` };
        throw new Error(`reading MetalLB's state with k3s kubectl: ${r.stderr.trim()}`);
      }
      const found = r.stdout.trim() ? (JSON.parse(r.stdout) as KubeList).items : [];
      const record = found.find((i) => i.kind === 'ConfigMap');
      const deploy = found.find((i) => i.kind === 'Deployment');
      const containers = (deploy?.spec as { template?: { spec?: { containers?: { name: string; image: string }[] } } } | undefined)?.template?.spec?.containers ?? [];
      const objects = new Map<string, KubeItem>();
      if (record) {
        // The CRDs exist once the manifest went on; before that this `get` would fail.
        const list = await k.json<KubeList>(['get', '-n', METALLB_NAMESPACE, 'ipaddresspools.metallb.io,l2advertisements.metallb.io', '-l', `app.kubernetes.io/managed-by=${MANAGED_BY_LABEL['app.kubernetes.io/managed-by']}`]);
        for (const i of list.items) objects.set(key(i), i);
      }
      return {
        ...base,
        apiDown: null,
        applied: record?.data ? { version: record.data.version ?? '', sha256: record.data.sha256 ?? '' } : null,
        controllerImage: containers.find((c) => c.name === 'controller')?.image ?? null,
        objects,
      };
    },

    preflight(ctx, observed): Problem[] {
      const spec = ctx.cluster.spec;
      const m = spec.metallb;
      if (!m) return [];
      const problems: Problem[] = [];
      // FACTS (k3s hosts): MetalLB requires servicelb disabled on all servers.
      if (!spec.k3s.disable.includes('servicelb')) {
        problems.push({ severity: 'error', path: 'k3s.disable', message: 'servicelb is not disabled, but MetalLB is configured: both would answer LoadBalancer Services', hint: 'add servicelb to k3s.disable (or remove the metallb section)' });
      }
      for (const o of observed.values()) {
        if (!o.wantSha256) {
          problems.push({ severity: 'error', path: 'metallb.version', message: `k8s-ha has no pinned checksum for MetalLB ${m.version} (it knows ${Object.keys(METALLB_MANIFEST_SHA256).join(', ')})`, hint: 'use a known version, or set metallb.manifest.sha256 to the sha256 of its metallb-native.yaml' });
        }
        // Pending when an earlier phase (k3s servers) still has to write config.yaml:
        // a warning here; the install itself re-checks and refuses (see the gate below).
        for (const s of o.servicelb.filter((x) => x.state === 'enabled')) {
          problems.push({ severity: 'warning', path: `hosts[${spec.hosts.findIndex((h) => h.name === s.host)}]`, message: `${s.host}: servicelb is enabled in ${K3S_CONFIG_PATH}; MetalLB is installed only once it is disabled on every server` });
        }
      }
      return problems;
    },

    diff(ctx, hostName, o): Change[] {
      const spec = ctx.cluster.spec;
      const m = spec.metallb!;
      const input = metallbInput(spec)!;
      const want = metallbObjects(input);
      const objectsYaml = want.map((x) => `---\n${stringify(x, { sortMapEntries: true, lineWidth: 0 })}`).join('');
      const changes: Change[] = [];
      const note = o.apiDown ? ` (the API on ${hostName} does not answer yet: ${o.apiDown})` : '';
      const imageOk = o.controllerImage === null || imageVersion(o.controllerImage) === m.version;
      const manifestDue = o.apiDown !== null || !o.applied || o.applied.version !== m.version || o.applied.sha256 !== o.wantSha256 || !imageOk;
      const objectsDue = o.apiDown !== null || want.some((w) => objectDiffers(w, o.objects.get(key(w))));
      const stale = [...o.objects.values()].filter((got) => !want.some((w) => key(w) === key(got)));

      if (manifestDue) {
        const why = !o.applied ? '' : o.applied.version !== m.version ? ` (upgrade from ${o.applied.version})` : !imageOk ? ` (controller runs ${o.controllerImage})` : ' (manifest changed)';
        changes.push({
          action: o.applied ? 'update' : 'create',
          target: { host: hostName, object: MANIFEST_OBJECT },
          before: o.applied ? `${o.applied.version} sha256 ${o.applied.sha256}` : null,
          after: `${m.version} sha256 ${o.wantSha256 ?? '?'}`,
          summary: `apply MetalLB ${m.version} manifest${why}, sha256 ${o.wantSha256?.slice(0, 12) ?? '?'}…${note}`,
          detail: m.manifest?.file ? `from ${m.manifest.file}` : `from ${metallbManifestUrl(m.version)}`,
          apply: async (h) => {
            // The gate: servicelb must be off on every server before MetalLB goes on (FACTS).
            const on = (await servicelbOnServers(ctx)).filter((s) => s.state !== 'disabled');
            if (on.length) {
              throw new Error(
                `servicelb is not disabled on ${on.map((s) => `${s.host} (${s.state === 'absent' ? `no ${K3S_CONFIG_PATH}` : 'enabled'})`).join(', ')}; ` +
                  `MetalLB was not installed. Put servicelb in k3s.disable and run apply again (the k3s phases restart the servers one at a time)`,
              );
            }
            const body = await loadManifest(spec, o.wantSha256);
            const k = hostKubectl(h);
            await k.run(['apply', '--server-side', '--force-conflicts', `--field-manager=${FIELD_MANAGER}`, '-f', '-'], { stdin: body.toString('utf8'), timeoutMs: 300_000 });
            const record = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: METALLB_RECORD, namespace: METALLB_NAMESPACE, labels: { ...MANAGED_BY_LABEL } }, data: { version: m.version, sha256: o.wantSha256 ?? sha256(body) } };
            await k.run(['apply', '--server-side', '--force-conflicts', `--field-manager=${FIELD_MANAGER}`, '-f', '-'], { stdin: JSON.stringify(record) });
          },
        });
      }
      // An upgrade (or a manifest put back over a running MetalLB): the old controller stays
      // Available while its Deployment rolls, so wait for the new pods themselves, speakers too.
      if (manifestDue && o.applied && o.apiDown === null) {
        const waitS = Math.round(waitMsFor(ctx.cluster.spec) / 1000);
        changes.push({
          action: 'run',
          target: { host: hostName, object: `DaemonSet/${METALLB_NAMESPACE}/speaker` },
          summary: `wait until MetalLB's controller and every speaker run ${m.version} (rollout status, up to ${waitS} s each)`,
          apply: async (h) => {
            const k = hostKubectl(h);
            for (const w of ['deployment/controller', 'daemonset/speaker']) {
              const r = await k.run(['rollout', 'status', '-n', METALLB_NAMESPACE, w, `--timeout=${waitS}s`], { allowFailure: true, timeoutMs: (waitS + 30) * 1000 });
              if (r.code !== 0) {
                throw new Error(
                  `MetalLB's ${w} did not finish rolling out ${m.version} within ${waitS} s (${r.stderr.trim().split('\n').pop() ?? `exit ${r.code}`}); the bound is waits.metallbReady; ` +
                    `the old pods keep serving where the new ones are not ready: look at \`k3s kubectl -n ${METALLB_NAMESPACE} get pods -o wide\`, then run apply again`,
                );
              }
            }
          },
        });
      }
      if (manifestDue || objectsDue) {
        changes.push({
          action: 'run',
          target: { host: hostName, object: `Deployment/${METALLB_NAMESPACE}/controller` },
          summary: `wait for MetalLB's controller and webhook (up to ${Math.round(waitMsFor(ctx.cluster.spec) / 1000)} s)`,
          apply: (h) => waitReady(hostKubectl(h), objectsYaml, waitMsFor(ctx.cluster.spec)),
        });
      }
      if (objectsDue) {
        const names = want.filter((w) => objectDiffers(w, o.objects.get(key(w)))).map(key);
        changes.push({
          action: o.objects.size ? 'update' : 'create',
          target: { host: hostName, object: OBJECTS_OBJECT },
          before: o.apiDown ? null : [...o.objects.keys()].sort().join(', ') || null,
          after: want.map(key).join(', '),
          summary: `apply ${(o.apiDown ? want.map(key) : names).join(', ')}`,
          detail: objectsYaml,
          apply: async (h) => {
            await hostKubectl(h).run(['apply', '--server-side', '--force-conflicts', `--field-manager=${FIELD_MANAGER}`, '-f', '-'], { stdin: objectsYaml });
          },
        });
      }
      if (stale.length) {
        changes.push({
          action: 'delete',
          target: { host: hostName, object: OBJECTS_OBJECT },
          before: stale.map(key).join(', '),
          after: null,
          summary: `delete ${stale.map(key).join(', ')} (no longer in the cluster file)`,
          apply: async (h) => {
            const k = hostKubectl(h);
            for (const s of stale) await k.run(['delete', '-n', METALLB_NAMESPACE, `${s.kind === 'IPAddressPool' ? 'ipaddresspools.metallb.io' : 'l2advertisements.metallb.io'}/${s.metadata.name}`, '--ignore-not-found']);
          },
        });
      }
      return changes;
    },
  };
}
