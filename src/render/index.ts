// Pure, deterministic renderers for every file k8s-ha writes on a host. Each
// takes its own small input type and returns the file's text; none does I/O.
export * from './common.js';
export * from './systemd.js';
export * from './nginx.js';
export * from './haproxy.js';
export * from './keepalived.js';
export * from './mariadb.js';
export * from './k3s.js';
export * from './metallb.js';
export * from './docker.js';
