#!/usr/bin/env bash
# Deploy the gateway and PostgreSQL: scripts/deploy.sh OVERLAY NAMESPACE
#
#   OVERLAY    kind | aws (a directory under manifests/overlays)
#   NAMESPACE  created when absent
#
# Environment:
#   REGISTRY, TAG  (aws only, required) the gateway image becomes $REGISTRY/pg-gateway:$TAG
#   TLS_CERT_ARN   (aws only, required) the ACM certificate the load balancer presents
#   KUBECTL        kubectl to use [kubectl]; the current context is the target cluster
#   TIMEOUT        how long to wait for each rollout [300s]
#
# The Secret pg-gateway-secrets is created with random values only when it does not exist yet
# (PostgreSQL keeps the password it was initialised with, so it must never change under it);
# the values are never printed. Tracked files are never edited: for aws the image is set in a
# throwaway kustomization that wraps the overlay.
set -euo pipefail

usage() {
	echo "usage: $0 OVERLAY NAMESPACE   (OVERLAY: kind | aws; aws needs REGISTRY and TAG)" >&2
	exit 2
}

[[ $# -eq 2 ]] || usage
overlay=$1
namespace=$2
root=$(cd "$(dirname "$0")/.." && pwd)
overlay_dir="$root/manifests/overlays/$overlay"
kubectl=${KUBECTL:-kubectl}
timeout=${TIMEOUT:-300s}

[[ -f "$overlay_dir/kustomization.yaml" ]] || {
	echo "deploy: no overlay $overlay_dir" >&2
	usage
}
command -v "$kubectl" >/dev/null || {
	echo "deploy: $kubectl not found (set KUBECTL)" >&2
	exit 2
}

if [[ $overlay == aws ]]; then
	: "${REGISTRY:?aws needs REGISTRY (e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com)}"
	: "${TAG:?aws needs TAG (the gateway image tag to deploy)}"
	: "${TLS_CERT_ARN:?aws needs TLS_CERT_ARN (the ACM certificate of the load balancer)}"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 700 "$tmp"

random_secret() {
	# 32 random bytes, URL-safe base64 without padding: no quoting trouble anywhere.
	python3 -c 'import secrets; print(secrets.token_urlsafe(32))'
}

if ! "$kubectl" get namespace "$namespace" >/dev/null 2>&1; then
	echo "deploy: creating namespace $namespace"
	"$kubectl" create namespace "$namespace"
fi

if "$kubectl" -n "$namespace" get secret pg-gateway-secrets >/dev/null 2>&1; then
	echo "deploy: secret pg-gateway-secrets exists; keeping it"
else
	echo "deploy: creating secret pg-gateway-secrets with random values"
	# Values go through files in a private directory, never through argv or the terminal.
	# api-tokens: an admin token (the gateway's login; up to 10 requests in flight per worker,
	# those beyond POOL_MAX waiting for a connection) and a read-only one (reader's login,
	# READ_ONLY_ROLES), each named for the metrics.
	for key in postgres-password gateway-password reader-password admin-token reader-token; do
		random_secret | tr -d '\n' >"$tmp/$key"
	done
	printf '%s:name=admin:concurrency=10,%s:reader:name=reader' \
		"$(cat "$tmp/admin-token")" "$(cat "$tmp/reader-token")" >"$tmp/api-tokens"
	"$kubectl" -n "$namespace" create secret generic pg-gateway-secrets \
		--from-file=postgres-password="$tmp/postgres-password" \
		--from-file=gateway-password="$tmp/gateway-password" \
		--from-file=reader-password="$tmp/reader-password" \
		--from-file=api-tokens="$tmp/api-tokens" >/dev/null
	rm -f "$tmp"/*-password "$tmp"/*-token "$tmp/api-tokens"
	"$kubectl" -n "$namespace" label secret pg-gateway-secrets \
		app.kubernetes.io/part-of=pg-gateway >/dev/null
	echo "deploy: read the API tokens (admin first, then reader) with:" \
		"$kubectl -n $namespace get secret pg-gateway-secrets -o jsonpath='{.data.api-tokens}' | base64 -d"
fi

kustomization=$overlay_dir
if [[ $overlay == aws ]]; then
	wrapper="$tmp/kustomization"
	mkdir "$wrapper"
	# kustomize refuses absolute resource paths: reach the overlay relative to the wrapper.
	relative=$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' \
		"$overlay_dir" "$wrapper")
	cat >"$wrapper/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $relative
images:
  - name: REGISTRY/pg-gateway
    newName: $REGISTRY/pg-gateway
    newTag: "$TAG"
patches:
  - target:
      kind: Service
      name: pg-gateway
    patch: |-
      - op: replace
        path: /metadata/annotations/service.beta.kubernetes.io~1aws-load-balancer-ssl-cert
        value: "$TLS_CERT_ARN"
EOF
	kustomization=$wrapper
	if "$kubectl" -n "$namespace" get secret pg-gateway-tls >/dev/null 2>&1; then
		echo "deploy: secret pg-gateway-tls exists; keeping it"
	else
		# The pods' side of the load balancer's second TLS hop: the NLB does not verify the
		# targets' certificate, so a self-signed one suffices (replace it with your CA's).
		echo "deploy: creating secret pg-gateway-tls with a self-signed certificate"
		openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=pg-gateway" \
			-keyout "$tmp/tls.key" -out "$tmp/tls.crt" 2>/dev/null
		"$kubectl" -n "$namespace" create secret tls pg-gateway-tls \
			--cert="$tmp/tls.crt" --key="$tmp/tls.key" >/dev/null
		rm -f "$tmp/tls.key" "$tmp/tls.crt"
		"$kubectl" -n "$namespace" label secret pg-gateway-tls \
			app.kubernetes.io/part-of=pg-gateway >/dev/null
	fi
fi

echo "deploy: applying overlay $overlay to namespace $namespace"
"$kubectl" apply -n "$namespace" -k "$kustomization"

echo "deploy: waiting for the rollouts (timeout $timeout each)"
"$kubectl" -n "$namespace" rollout status statefulset/postgres --timeout="$timeout"
"$kubectl" -n "$namespace" rollout status deployment/pg-gateway --timeout="$timeout"
echo "deploy: done"
