#!/usr/bin/env bash
# The whole dualmesh flow on two real control planes (alpha = management,
# beta = member), with the kubectl commands a platform team would type.
# The planes behave like clusters (`testplane up --cluster`): the gateways
# are Deployments that kube-scheduler places on fake Nodes, kwok plays the
# kubelets (Pods Running and Ready, dual-stack Pod IPs from the nodes'
# podCIDRs), and a `kubectl drain` moves a gateway to another node.
#
#   tools/demo.sh            # `make demo`
#   DEMO_DIR=/tmp/x DEMO_EXTERNAL_PLANES=1 tools/demo.sh --stop-after
#       # tests/demo.rs: planes it started itself, <dir>/{alpha,beta}.kubeconfig
#
# Needs: kubectl and the testplane/dualmesh binaries (`make demo` builds them).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${DEMO_DIR:-.dev}
BIN=${DUALMESH_BIN:-target/debug/dualmesh}
TESTPLANE=${TESTPLANE_BIN:-target/debug/testplane}
STOP_AFTER=${1:-}
export PATH="${DUALMESH_TOOLS_BIN:?run through make, or set DUALMESH_TOOLS_BIN}:$PATH"

A="kubectl --kubeconfig $DIR/alpha.kubeconfig"
B="kubectl --kubeconfig $DIR/beta.kubeconfig"
NS=dualmesh-system

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
# Namespaces by server-side apply, as the CRDs: dualmesh applies istio-system
# and gloo-mesh itself (server-side), and a client-side `kubectl apply` on an
# object created that way warns that it lacks the last-applied annotation.
namespace() { # kubectl-prefix name
  $1 apply --server-side -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $2}
EOF
}

STARTED_PLANES=""
STARTED_DUALMESH=""
# Stops what this run started (planes a previous `make dev-up` started stay).
stop() {
  trap - EXIT INT TERM
  if [[ -n $STARTED_DUALMESH && -f $DIR/dualmesh.pid ]]; then
    kill "$(cat "$DIR/dualmesh.pid")" 2>/dev/null || true
    rm -f "$DIR/dualmesh.pid"
    echo "stopped dualmesh"
  fi
  if [[ -n $STARTED_PLANES ]]; then "$TESTPLANE" down --dir "$DIR"; fi
}
trap stop EXIT
trap 'echo; exit 130' INT TERM

step "Two control planes: alpha (management) and beta (member)"
if [[ -n ${DEMO_EXTERNAL_PLANES:-} ]]; then
  echo "using the planes in $DIR"
elif [[ ! -f $DIR/alpha.pids ]]; then
  STARTED_PLANES=1
  "$TESTPLANE" up --dir "$DIR" --cluster alpha beta
else
  echo "using the planes make dev-up started (they stay up afterwards)"
fi

step "Install the CRDs on alpha"
run $A apply --server-side -f crds/
run $A wait --for condition=established --timeout=30s crd/meshclusters.dualmesh.io crd/dualstackpolicies.dualmesh.io

step "Trust material on alpha (seed 000: the Gloo Mesh relay root CA and token) and beta's kubeconfig"
namespace "$A" $NS
namespace "$A" gloo-mesh
ca=$(printf -- '-----BEGIN CERTIFICATE-----\nMIIBdemoROOTca\n-----END CERTIFICATE-----\n')
$A -n gloo-mesh create secret generic relay-root-tls-secret --from-literal=ca.crt="$ca" --dry-run=client -o yaml | $A apply -f -
$A -n gloo-mesh create secret generic relay-identity-token-secret --from-literal=token=demo-token-1 --dry-run=client -o yaml | $A apply -f -
$A -n $NS create secret generic beta-kubeconfig --from-file=kubeconfig="$DIR/beta.kubeconfig" --dry-run=client -o yaml | $A apply -f -

step "Start dualmesh against alpha (log: $DIR/dualmesh.log)"
if [[ -f $DIR/dualmesh.pid ]] && kill -0 "$(cat "$DIR/dualmesh.pid")" 2>/dev/null; then
  echo "already running (pid $(cat "$DIR/dualmesh.pid"))"
else
  KUBECONFIG=$DIR/alpha.kubeconfig "$BIN" run --namespace $NS --listen '[::1]:0' >"$DIR/dualmesh.log" 2>&1 &
  echo $! >"$DIR/dualmesh.pid"
  STARTED_DUALMESH=1
fi
addr=""
for _ in $(seq 100); do
  addr=$(sed -n 's/.*serving \/healthz \/readyz \/metrics addr=\([^ ]*\).*/\1/p' "$DIR/dualmesh.log" | tail -1)
  [[ -n $addr ]] && break
  sleep 0.1
done
[[ -n $addr ]] || { echo "dualmesh did not start:"; cat "$DIR/dualmesh.log"; exit 1; }
echo "health and metrics on http://$addr"

step "Apply the policy and both MeshClusters"
run $A apply -f examples/policy-ipv6-only.yaml -f examples/meshcluster-alpha.yaml -f examples/meshcluster-beta.yaml

# A fake Node with the InternalIPs a kubelet would report, registered Ready
# as a kubelet registers (whole status in the create): kwok keeps its Lease
# and runs its Pods, kube-controller-manager gives it podCIDRs (see
# tests/support/src/fake_nodes.rs for why kwok's node-initialize must not
# run on it).
node() { # kubectl-prefix name address...
  local k=$1 name=$2; shift 2
  local addrs now
  addrs=$(printf '{"type":"InternalIP","address":"%s"},' "$@")
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  $k create -f - >/dev/null <<EOF
{"apiVersion": "v1", "kind": "Node",
 "metadata": {"name": "$name", "annotations": {"kwok.x-k8s.io/node": "fake"},
              "labels": {"kubernetes.io/hostname": "$name", "kubernetes.io/os": "linux", "type": "kwok", "demo": "gateway"}},
 "status": {"addresses": [${addrs%,}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "demo",
                            "lastHeartbeatTime": "$now", "lastTransitionTime": "$now"}],
            "capacity": {"cpu": "1k", "memory": "1Ti", "pods": "1M"},
            "allocatable": {"cpu": "1k", "memory": "1Ti", "pods": "1M"}}}
EOF
  $k wait --for=jsonpath='{.spec.podCIDRs[1]}' --timeout=30s "node/$name" >/dev/null
}
gateway() { # kubectl-prefix
  local k=$1
  namespace "$k" istio-system
  $k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: istio-ingressgateway, namespace: istio-system, labels: {app: istio-ingressgateway}}
spec:
  type: NodePort
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv6, IPv4]
  selector: {app: istio-ingressgateway}
  ports:
    - {name: http2, port: 80, targetPort: 8080}
    - {name: tls, port: 15443, targetPort: 15443, nodePort: 32443}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  replicas: 1
  selector:
    matchLabels: {app: istio-ingressgateway, istio: ingressgateway}
  template:
    metadata:
      labels: {app: istio-ingressgateway, istio: ingressgateway}
    spec:
      # The demo's nodes only (make dev-up's planes have fake Nodes of their own).
      nodeSelector: {demo: gateway}
      terminationGracePeriodSeconds: 0
      containers: [{name: istio-proxy, image: docker.io/istio/proxyv2:1.28.0}]
EOF
  $k -n istio-system rollout status deployment/istio-ingressgateway --timeout=60s >/dev/null
}

step "Gateways: a Deployment on node-1 of each cluster (an IPv4, a link-local and a global IPv6 InternalIP)"
node "$A" node-1 192.0.2.11 fe80::11 2001:db8:a::11; gateway "$A"
node "$B" node-1 192.0.2.21 fe80::21 2001:db8:b::21; gateway "$B"
node "$A" node-2 192.0.2.12 2001:db8:a::12
run $A get nodes -o custom-columns='NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status,PODCIDRS:.spec.podCIDRs,ADDRESSES:.status.addresses[*].address'
run $A -n istio-system get pods -o custom-columns='POD:.metadata.name,NODE:.spec.nodeName,READY:.status.conditions[?(@.type=="Ready")].status,POD-IPS:.status.podIPs[*].ip'

step "dualmesh brings both MeshClusters to Ready"
run $A -n $NS wait meshcluster/alpha meshcluster/beta --for=condition=Ready --timeout=60s
run $A get dualstackpolicies

step "The conditions of beta"
$A -n $NS get meshcluster beta -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'

for c in alpha beta; do
  k=$A; [[ $c == beta ]] && k=$B
  step "The IstioOperator dualmesh rendered for $c (ConfigMap istio-system/$c-istiooperator on $c; the dual-stack lines)"
  $k -n istio-system get configmap "$c-istiooperator" -o jsonpath='{.data.istiooperator\.yaml}' \
    | grep -E 'kind:|clusterName|network:|meshID|ISTIO_DUAL_STACK|ipFamil|IPv[46]|PILOT_|hub:|tag:' | head -20
done

step "Gateway externalIPs: only the global IPv6 address allowed by the policy"
echo "alpha: $($A -n istio-system get svc istio-ingressgateway -o jsonpath='{.spec.externalIPs}')"
echo "beta:  $($B -n istio-system get svc istio-ingressgateway -o jsonpath='{.spec.externalIPs}')"

step "node-1 of alpha is drained: the gateway moves to node-2, and its address follows"
run $A drain node-1 --ignore-daemonsets --timeout=60s
run $A -n istio-system rollout status deployment/istio-ingressgateway --timeout=60s
run $A -n istio-system get pods -o custom-columns='POD:.metadata.name,NODE:.spec.nodeName,READY:.status.conditions[?(@.type=="Ready")].status,POD-IPS:.status.podIPs[*].ip'
for _ in $(seq 100); do
  ips=$($A -n istio-system get svc istio-ingressgateway -o jsonpath='{.spec.externalIPs}')
  [[ $ips == *2001:db8:a::12* ]] && break
  sleep 0.1
done
echo "alpha: $ips"
[[ $ips == '["2001:db8:a::12"]' ]] || { echo "expected [\"2001:db8:a::12\"]"; exit 1; }

step "The trust Secrets dualmesh synced to beta"
run $B -n gloo-mesh get secrets -L app.kubernetes.io/managed-by

step "The relay token is rotated on alpha; dualmesh copies it to beta"
$A -n gloo-mesh create secret generic relay-identity-token-secret --from-literal=token=demo-token-2 --dry-run=client -o yaml | $A apply -f -
for _ in $(seq 150); do
  token=$($B -n gloo-mesh get secret relay-identity-token-secret -o jsonpath='{.data.token}' | base64 -d)
  [[ $token == demo-token-2 ]] && break
  sleep 0.1
done
echo "beta's token: $token"
[[ $token == demo-token-2 ]] || { echo "expected demo-token-2"; exit 1; }

step "Metrics (http://$addr/metrics)"
curl -fsS "http://$addr/metrics" | grep -E '^dualmesh_(gateway_addresses|member_reachable|meshcluster_ready|secrets_synced)\{' | sort

step "The MeshClusters"
run $A -n $NS get meshclusters -o wide
echo "demo: OK"

if [[ $STOP_AFTER != --stop-after ]]; then
  step "Everything keeps running; watching the MeshClusters. Ctrl-C stops all this demo started."
  echo "In another shell: export PATH=$DUALMESH_TOOLS_BIN:\$PATH; $A -n $NS describe meshcluster beta"
  $A -n $NS get meshclusters -o wide -w
fi
