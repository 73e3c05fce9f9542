#!/usr/bin/env bash
# The main job, end to end on this machine: install what is missing, boot a
# lab of six real machines (the seed topology: infra with nginx + MariaDB,
# two servers, three agents), apply the seed cluster to it with k8s-ha (the
# lab's k3s with real kubelets, the lab's images by the air-gap path, MetalLB
# as published), verify it (HTTP on a MetalLB address included), and print
# the kubeconfig path and the nodes. Run it again: the lab is reused, and the
# second apply changes nothing.
#   sudo scripts/demo.sh            (LAB=name to choose the lab's name)
set -euo pipefail
cd "$(dirname "$0")/.."
lab=${LAB:-demo}
dir=.lab/$lab
file=${K8S_HA_LAB_STATE:-/var/lib/k8s-ha-lab}/$lab/cluster.yaml
k8s() { node bin/k8s-ha.js "$@"; }

bash scripts/setup.sh

mkdir -p "$dir"
# Reuse a healthy lab of that name; otherwise start from fresh machines.
if ! { k8s lab status --name "$lab" >/dev/null 2>&1 && [ -f "$file" ]; }; then
  k8s lab down --name "$lab" >/dev/null 2>&1 || true
  k8s lab up --name "$lab"
fi
k8s validate -f "$file"
k8s apply -f "$file" --yes --no-verify
k8s verify -f "$file"
k8s kubeconfig -f "$file" -o "$dir/kubeconfig"
echo
echo "kubeconfig: $dir/kubeconfig (the API through the load balancer)"
labk3s/bin/kubectl --kubeconfig "$dir/kubeconfig" get nodes -o wide
echo
k8s status -f "$file" || true
echo
echo "Again:     sudo scripts/demo.sh   (changes nothing the second time)"
echo "Cluster:   $file (state beside it)"
echo "Look:      node bin/k8s-ha.js lab ssh server1 --name $lab"
echo "Remove:    node bin/k8s-ha.js lab down --name $lab"
