#!/bin/sh
# Deploys raftlb and the example application to the cluster kubectl points
# at. Needs kubectl, and raftlb on PATH (for the certificates).
#   ./deploy.sh            certificates, ConfigMap, StatefulSet, application
#   ./deploy.sh certs      only the certificates and their Secret
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ns=lb
peers=raftlb-peers.$ns.svc.cluster.local

kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns"

# Mutual TLS: one certificate per node naming its stable peer name (and
# 127.0.0.1, for raftlb ctl through kubectl port-forward), and an admin
# client certificate for raftlb ctl. Kept in certs/ (git-ignored): running
# again keeps the CA and adds only what is missing.
raftlb certs init --out "$here/certs" \
  --node "1=raftlb-0.$peers,127.0.0.1" --node "2=raftlb-1.$peers,127.0.0.1" \
  --node "3=raftlb-2.$peers,127.0.0.1" \
  --client admin
kubectl -n "$ns" create secret generic raftlb-tls \
  --from-file="$here/certs/ca.pem" \
  --from-file="$here/certs/node1.pem" --from-file="$here/certs/node1-key.pem" \
  --from-file="$here/certs/node2.pem" --from-file="$here/certs/node2-key.pem" \
  --from-file="$here/certs/node3.pem" --from-file="$here/certs/node3-key.pem" \
  --dry-run=client -o yaml | kubectl apply -f -
[ "${1:-}" = certs ] && exit 0

kubectl -n "$ns" create configmap raftlb-config \
  --from-file="$here/node.toml.in" --from-file="$here/cluster.toml" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f "$here/web.yaml"
kubectl apply -f "$here/raftlb.yaml"
kubectl -n "$ns" rollout status statefulset/raftlb --timeout=180s
