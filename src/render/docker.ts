import { stringify } from 'yaml';
import { RenderInputError, assertPath, managedHeader } from './common.js';
import { renderUnit } from './systemd.js';

/**
 * Running the API load balancer as a container instead of the Debian
 * package. Only nginx: its official image has the stream module built in.
 * Render the nginx.conf with `flavor: 'official-image'` (user nginx, no
 * modules-enabled include) for this.
 */
export interface LbContainerInput {
  /** Image reference; pin a version or digest in production. Default nginx:stable. */
  image?: string;
  /** The rendered nginx.conf on the host, mounted read-only over the image's. */
  confPath: string;
  /** Container name. Default k8s-ha-lb. */
  containerName?: string;
  /** Path of the docker CLI, for the systemd unit. Default /usr/bin/docker. */
  dockerPath?: string;
}

export const LB_CONTAINER_DEFAULT_IMAGE = 'nginx:stable';
export const LB_CONTAINER_DEFAULT_NAME = 'k8s-ha-lb';
/** Where renderLbDockerUnit's output goes. */
export const LB_DOCKER_UNIT_PATH = '/etc/systemd/system/k8s-ha-lb.service';

// registry/path:tag@digest, conservatively: no spaces, quotes or shell characters.
const IMAGE = /^[a-z0-9]([a-z0-9._/:-]*[a-z0-9])?(@sha256:[a-f0-9]{64})?$/;
const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

function resolved(input: LbContainerInput): Required<LbContainerInput> {
  const image = input.image ?? LB_CONTAINER_DEFAULT_IMAGE;
  const containerName = input.containerName ?? LB_CONTAINER_DEFAULT_NAME;
  const dockerPath = input.dockerPath ?? '/usr/bin/docker';
  if (!IMAGE.test(image)) throw new RenderInputError('image', `must be an image reference like nginx:1.27 or nginx@sha256:..., got ${JSON.stringify(image)}`);
  if (!NAME.test(containerName)) throw new RenderInputError('containerName', `must be letters, digits, '_', '.', '-', got ${JSON.stringify(containerName)}`);
  assertPath('confPath', input.confPath);
  assertPath('dockerPath', dockerPath);
  return { image, containerName, confPath: input.confPath, dockerPath };
}

/**
 * A compose file for the LB container. Host networking: the LB must listen
 * on the host's (or the VIP's) 6443 and keepalived's check must see it, and
 * a published port would add a NAT hop and hide client addresses.
 */
export function renderLbComposeFile(input: LbContainerInput): string {
  const r = resolved(input);
  const doc = {
    services: {
      'k3s-api-lb': {
        container_name: r.containerName,
        image: r.image,
        network_mode: 'host',
        restart: 'always',
        volumes: [`${r.confPath}:/etc/nginx/nginx.conf:ro`],
      },
    },
  };
  return managedHeader('#', 'Compose file: the k3s API load balancer as a container.') + stringify(doc, { sortMapEntries: true, lineWidth: 0, version: '1.1' });
}

/**
 * A systemd unit that runs the LB container in the foreground, so systemd
 * (not the Docker daemon's restart policy) supervises it and orders it after
 * docker.service. Each start removes a leftover container of the same name.
 */
export function renderLbDockerUnit(input: LbContainerInput): string {
  const r = resolved(input);
  return renderUnit({
    comment: ['k3s API load balancer (nginx in a container). Managed by k8s-ha: local edits are overwritten on the next apply.'],
    Unit: [
      ['Description', 'k3s API load balancer (container)'],
      ['Requires', 'docker.service'],
      ['After', 'docker.service network-online.target'],
      ['Wants', 'network-online.target'],
    ],
    Service: [
      ['Type', 'exec'],
      ['ExecStartPre', `-${r.dockerPath} rm -f ${r.containerName}`],
      ['ExecStart', `${r.dockerPath} run --rm --name ${r.containerName} --network host -v ${r.confPath}:/etc/nginx/nginx.conf:ro ${r.image}`],
      ['ExecStop', `${r.dockerPath} stop ${r.containerName}`],
      ['ExecReload', `${r.dockerPath} kill --signal HUP ${r.containerName}`],
      ['Restart', 'always'],
      ['RestartSec', '2s'],
    ],
    Install: [['WantedBy', 'multi-user.target']],
  });
}
