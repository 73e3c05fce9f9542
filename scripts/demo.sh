#!/usr/bin/env bash
# The main job, end to end on this machine: install what is missing, boot a
# lab of six real machines (the seed topology: infra with nginx + MariaDB,
# two servers, three agents), apply the seed cluster to it with k8s-ha, run
# MetalLB's controller for the lab, verify the cluster, and print the
# kubeconfig path and the nodes. Run it again: the lab is reused, and the
# second apply changes nothing.
#   sudo scripts/demo.sh            (LAB=name to choose the lab's name)
set -euo pipefail
cd "$(dirname "$0")/.."
lab=${LAB:-demo}
dir=.lab/$lab
k8s() { node bin/k8s-ha.js "$@"; }

bash scripts/setup.sh
[ -x labk3s/metallb/build.sh ] && labk3s/metallb/build.sh >/dev/null

mkdir -p "$dir"
if ! k8s lab status --name "$lab" >/dev/null 2>&1; then
  k8s lab down --name "$lab" >/dev/null 2>&1 || true
  k8s lab up --name "$lab" --out "$dir/cluster.yaml"
fi
k8s validate -f "$dir/cluster.yaml"
k8s apply -f "$dir/cluster.yaml" --yes --no-verify
k8s lab metallb --name "$lab"
k8s verify -f "$dir/cluster.yaml"
k8s kubeconfig -f "$dir/cluster.yaml" -o "$dir/kubeconfig"
echo
echo "kubeconfig: $dir/kubeconfig (the API through the load balancer)"
labk3s/bin/kubectl --kubeconfig "$dir/kubeconfig" get nodes -o wide
echo
k8s status -f "$dir/cluster.yaml" || true
echo
echo "Again:     sudo scripts/demo.sh   (changes nothing the second time)"
echo "Look:      node bin/k8s-ha.js lab ssh server1 --name $lab"
echo "Remove:    node bin/k8s-ha.js lab down --name $lab"
