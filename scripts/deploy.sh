#!/usr/bin/env bash
# Deploy the gateway and PostgreSQL: scripts/deploy.sh OVERLAY NAMESPACE
#
#   OVERLAY    kind | kind-ha | aws (a directory under manifests/overlays)
#   NAMESPACE  created when absent
#
# Environment:
#   REGISTRY, TAG  (aws only, required) the images become $REGISTRY/pg-gateway:$TAG and
#                  $REGISTRY/pg-gateway-postgres:$TAG
#   TLS_CERT_ARN   (aws only, required) the ACM certificate the load balancer presents
#   API_SERVER_CIDR (aws only) the addresses of the control plane nodes, which Patroni's
#                  members may reach on 443 [the overlay's 172.20.0.0/16, kops's default VPC]
#   KUBECTL        kubectl to use [kubectl]; the current context is the target cluster
#   TIMEOUT        how long to wait for each rollout [300s]
#   NODEPORT_WAIT  (kind) seconds to wait for a namespace being deleted to free a NodePort [180]
#
# kind: its nodes pull nothing (no registry), so every image the overlay runs must already be
# on every node: when one is missing, deploy.sh stops at once and names the command that
# builds and loads them. A NodePort the overlay names that a namespace being deleted still
# holds is waited for; one that another namespace keeps stops it at once, saying which.
# The Secret pg-gateway-secrets is created with random values only when it does not exist yet
# (PostgreSQL keeps the password it was initialised with, so it must never change under it);
# the values are never printed. Tracked files are never edited: for aws the images are set in a
# throwaway kustomization that wraps the overlay.
#
# Replicated PostgreSQL (kind-ha, aws: components/postgres-ha): the members' StatefulSet is
# OnDelete, so instead of its rollout deploy.sh waits until every member is Ready, then runs
# scripts/roll-postgres.sh (replicas first, the primary last by switchover; nothing when every
# member is current). A namespace where an earlier release runs PostgreSQL alone, without
# Patroni, is moved over once: its StatefulSet is deleted (its volume stays), then the
# replicated one is applied with one member, so member 0 starts alone on the old volume and
# Patroni takes its data directory over; once it is Ready the rest are applied and clone it.
# Requests get 503 in between. Without that, a new member would start a second, empty
# cluster beside the running one.
set -euo pipefail

usage() {
	echo "usage: $0 OVERLAY NAMESPACE   (OVERLAY: kind | kind-ha | aws; aws needs REGISTRY, TAG" \
		"and TLS_CERT_ARN)" >&2
	exit 2
}

[[ $# -eq 2 ]] || usage
overlay=$1
namespace=$2
root=$(cd "$(dirname "$0")/.." && pwd)
overlay_dir="$root/manifests/overlays/$overlay"
kubectl=${KUBECTL:-kubectl}
timeout=${TIMEOUT:-300s}
nodeport_wait=${NODEPORT_WAIT:-180}

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

containerd_reference() {
	# The name containerd gives an image `kind load` brought in: Docker's short names are
	# Docker Hub's (as harness/cluster/kindcluster.py's containerd_reference).
	local image=$1 first=${1%%/*}
	if [[ $image != */* ]]; then
		echo "docker.io/library/$image"
	elif [[ $first == *.* || $first == *:* || $first == localhost ]]; then
		echo "$image"
	else
		echo "docker.io/$image"
	fi
}

check_kind_images() {
	# Every image of the rendering ($1) on every node, asked of each node's containerd.
	local image node found images nodes missing=()
	mapfile -t images < <(sed -n 's/^ *image: *//p' <<<"$1" | tr -d '"' | sort -u)
	read -ra nodes <<<"$("$kubectl" get nodes -o jsonpath='{.items[*].metadata.name}')"
	for image in "${images[@]}"; do
		for node in "${nodes[@]}"; do
			if ! found=$(docker exec "$node" ctr -n k8s.io images ls -q \
				"name==$(containerd_reference "$image")" 2>/dev/null); then
				echo "deploy: cannot look into kind node $node with docker; not checking its images" >&2
				continue
			fi
			[[ -n $found ]] || missing+=("$image (node $node)")
		done
	done
	if ((${#missing[@]})); then
		echo "deploy: images the kind overlay runs are not on the cluster's nodes, which pull nothing:" >&2
		printf '  %s\n' "${missing[@]}" >&2
		echo "deploy: build and load them with \`nox -s cluster -- images\`, then run this again" >&2
		exit 1
	fi
}

node_port_holder() {
	# "namespace service" of a Service outside $namespace that holds NodePort $1, if any.
	"$kubectl" get services --all-namespaces -o jsonpath='{range .items[*]}{.metadata.namespace}{" "}{.metadata.name}{" "}{.spec.ports[*].nodePort}{"\n"}{end}' |
		awk -v port="$1" -v ours="$namespace" \
			'$1 != ours { for (i = 3; i <= NF; i++) if ($i == port) { print $1, $2; exit } }'
}

wait_for_node_ports() {
	# Each NodePort of the rendering ($1): free, or held by a namespace being deleted (wait
	# for it, up to $nodeport_wait s); held by one that stays, stop now.
	local port ports holder held_by phase waited_since
	local deadline=$((SECONDS + nodeport_wait))
	mapfile -t ports < <(sed -n 's/^ *nodePort: *//p' <<<"$1" | sort -u)
	for port in "${ports[@]}"; do
		waited_since=
		while holder=$(node_port_holder "$port") && [[ -n $holder ]]; do
			held_by=${holder%% *}
			phase=$("$kubectl" get namespace "$held_by" -o jsonpath='{.status.phase}' 2>/dev/null || true)
			if [[ $phase != Terminating ]]; then
				echo "deploy: NodePort $port is held by service/${holder#* } of namespace $held_by:" \
					"delete that namespace ($kubectl delete namespace $held_by) or deploy into it" >&2
				exit 1
			fi
			if ((SECONDS >= deadline)); then
				echo "deploy: NodePort $port is still held by namespace $held_by, being deleted" \
					"for more than ${nodeport_wait}s; what holds it back:" \
					"$kubectl get namespace $held_by -o yaml" >&2
				exit 1
			fi
			if [[ -z $waited_since ]]; then
				waited_since=$SECONDS
				echo "deploy: NodePort $port is held by namespace $held_by, which is being deleted;" \
					"waiting (up to ${nodeport_wait}s in all)"
			fi
			sleep 2
		done
		if [[ -n $waited_since ]]; then
			echo "deploy: NodePort $port free after $((SECONDS - waited_since))s"
		fi
	done
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 700 "$tmp"

wrap() {
	# A new kustomization in directory $1 whose one resource is the kustomization $2;
	# the caller appends what it changes.
	mkdir "$1"
	# kustomize refuses absolute resource paths: reach $2 relative to the wrapper.
	local relative
	relative=$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' \
		"$2" "$1")
	cat >"$1/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $relative
EOF
}

kustomization=$overlay_dir
if [[ $overlay == aws ]]; then
	wrapper="$tmp/kustomization"
	wrap "$wrapper" "$overlay_dir"
	cat >>"$wrapper/kustomization.yaml" <<EOF
images:
  - name: REGISTRY/pg-gateway
    newName: $REGISTRY/pg-gateway
    newTag: "$TAG"
  - name: REGISTRY/pg-gateway-postgres
    newName: $REGISTRY/pg-gateway-postgres
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
	if [[ -n ${API_SERVER_CIDR:-} ]]; then
		cat >>"$wrapper/kustomization.yaml" <<EOF
  - target:
      kind: NetworkPolicy
      name: postgres-allow-apiserver
    patch: |-
      - op: replace
        path: /spec/egress/0/to/0/ipBlock/cidr
        value: "$API_SERVER_CIDR"
EOF
	fi
	kustomization=$wrapper
fi
# Rendered once: what is checked below is what is applied.
rendered=$("$kubectl" kustomize "$kustomization")
printf '%s\n' "$rendered" >"$tmp/rendered.yaml"

if [[ $overlay == kind* ]]; then
	check_kind_images "$rendered"
	wait_for_node_ports "$rendered"
fi

wait_for_members() {
	# Every member of the replicated StatefulSet Ready (it is OnDelete: no rollout to watch).
	local counts ready='' want='' deadline=$((SECONDS + ${timeout%s}))
	while counts=$("$kubectl" -n "$namespace" get statefulset postgres \
		-o jsonpath='{.status.readyReplicas} {.spec.replicas}') || true
		read -r ready want <<<"$counts"
		[[ -z $want || $ready != "$want" ]]; do
		((SECONDS < deadline)) || {
			echo "deploy: PostgreSQL's members not all Ready within $timeout (${ready:-0} of" \
				"${want:-?}); see $kubectl -n $namespace get pods -l app.kubernetes.io/name=postgres" >&2
			exit 1
		}
		sleep 2
	done
	echo "deploy: PostgreSQL's members are Ready ($want of $want)"
}

wait_for_no_members() {
	# The StatefulSet deleted: until none of its pods is left.
	local deadline=$((SECONDS + ${timeout%s}))
	while [[ -n $("$kubectl" -n "$namespace" get pods -l app.kubernetes.io/name=postgres -o name) ]]; do
		((SECONDS < deadline)) || {
			echo "deploy: PostgreSQL's pods still there $timeout after its StatefulSet was deleted" >&2
			exit 1
		}
		sleep 2
	done
}

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
	# api-tokens: an admin token (the gateway's login; up to 16 requests in flight per worker,
	# those beyond POOL_MAX waiting for a connection) and a read-only one (reader's login,
	# READ_ONLY_ROLES), each named for the metrics.
	for key in postgres-password gateway-password reader-password replication-password admin-token reader-token; do
		random_secret | tr -d '\n' >"$tmp/$key"
	done
	printf '%s:name=admin:concurrency=16,%s:reader:name=reader' \
		"$(cat "$tmp/admin-token")" "$(cat "$tmp/reader-token")" >"$tmp/api-tokens"
	"$kubectl" -n "$namespace" create secret generic pg-gateway-secrets \
		--from-file=postgres-password="$tmp/postgres-password" \
		--from-file=gateway-password="$tmp/gateway-password" \
		--from-file=reader-password="$tmp/reader-password" \
		--from-file=replication-password="$tmp/replication-password" \
		--from-file=api-tokens="$tmp/api-tokens" >/dev/null
	rm -f "$tmp"/*-password "$tmp"/*-token "$tmp/api-tokens"
	"$kubectl" -n "$namespace" label secret pg-gateway-secrets \
		app.kubernetes.io/part-of=pg-gateway >/dev/null
	echo "deploy: read the API tokens (admin first, then reader) with:" \
		"$kubectl -n $namespace get secret pg-gateway-secrets -o jsonpath='{.data.api-tokens}' | base64 -d"
fi

if [[ $overlay == aws ]]; then
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

replicated=
grep -q 'name: PATRONI_SCOPE' <<<"$rendered" && replicated=yes

if [[ -n $replicated ]] &&
	[[ $("$kubectl" -n "$namespace" get statefulset postgres --ignore-not-found \
		-o jsonpath='{.metadata.name}/{.spec.template.spec.containers[0].env[?(@.name=="PATRONI_SCOPE")].value}') == postgres/ ]]; then
	# PostgreSQL alone, without Patroni (header): stop it, so that member 0 starts first on its
	# volume and Patroni takes the data directory over. The StatefulSet itself goes (its
	# volumes stay): its RollingUpdate strategy cannot become OnDelete by an apply, which
	# keeps the defaulted rollingUpdate that only RollingUpdate allows.
	echo "deploy: PostgreSQL runs alone in $namespace; stopping it so that Patroni's first" \
		"member takes its data directory over (requests get 503 until it is back)"
	"$kubectl" -n "$namespace" delete statefulset postgres
	wait_for_no_members
	# The members start together (podManagementPolicy Parallel), and one with an empty volume
	# could win Patroni's initialize key and start a new, empty cluster: member 0 starts alone.
	wrap "$tmp/member-0" "$kustomization"
	cat >>"$tmp/member-0/kustomization.yaml" <<EOF
replicas:
  - name: postgres
    count: 1
EOF
	"$kubectl" kustomize "$tmp/member-0" >"$tmp/member-0.yaml"
	echo "deploy: starting member 0 alone on the old volume"
	"$kubectl" apply -n "$namespace" -f "$tmp/member-0.yaml"
	wait_for_members
fi

echo "deploy: applying overlay $overlay to namespace $namespace"
"$kubectl" apply -n "$namespace" -f "$tmp/rendered.yaml"

echo "deploy: waiting for the rollouts (timeout $timeout each)"
if [[ -n $replicated ]]; then
	wait_for_members
	KUBECTL=$kubectl TIMEOUT=$timeout "$root/scripts/roll-postgres.sh" "$namespace"
else
	"$kubectl" -n "$namespace" rollout status statefulset/postgres --timeout="$timeout"
fi
"$kubectl" -n "$namespace" rollout status deployment/pg-gateway --timeout="$timeout"
echo "deploy: done"
