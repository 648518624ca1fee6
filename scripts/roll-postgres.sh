#!/usr/bin/env bash
# Roll the replicated PostgreSQL (components/postgres-ha) onto its StatefulSet's current
# revision, replicas first, the primary last by switchover: scripts/roll-postgres.sh NAMESPACE
#
# The members' StatefulSet has `updateStrategy: OnDelete`: applying a changed pod template
# (an image, a setting, a new roles.sql) restarts nothing by itself, because the
# StatefulSet's own order (highest ordinal first) knows nothing of roles and would restart the
# primary whenever its turn came. This script deletes each outdated replica and waits until
# its replacement is Ready and streaming; then, when the primary is outdated, switches the
# primary role over to an updated replica (`patronictl switchover`, a clean handover: writes
# pause for a few seconds, nothing acknowledged is lost) and replaces the former primary the
# same way. It starts once every member is a primary or a replica (a member rejoining after
# a failover is neither for a while), and fails if a member is still outdated at the end. A
# member already on the current revision is left alone, so running it again is harmless.
#
# Environment:
#   KUBECTL   kubectl to use [kubectl]; the current context is the target cluster
#   TIMEOUT   how long to wait for each member [300s]
set -euo pipefail

[[ $# -eq 1 ]] || {
	echo "usage: $0 NAMESPACE" >&2
	exit 2
}
namespace=$1
kubectl=${KUBECTL:-kubectl}
timeout=${TIMEOUT:-300s}
members=app.kubernetes.io/name=postgres
config=/etc/patroni/patroni.yml

k() { "$kubectl" -n "$namespace" "$@"; }

revision=$(k get statefulset postgres -o jsonpath='{.status.updateRevision}')
[[ -n $revision ]] || {
	echo "roll-postgres: no StatefulSet postgres in $namespace" >&2
	exit 1
}

outdated() {
	# The members (of role $1, if given) not on the current revision, one name a line.
	k get pods -l "$members${1:+,role=$1}" -o \
		jsonpath='{range .items[*]}{.metadata.name} {.metadata.labels.controller-revision-hash}{"\n"}{end}' |
		while read -r pod hash; do
			[[ $hash == "$revision" ]] || echo "$pod"
		done
}

role_of() { k get pod "$1" -o jsonpath='{.metadata.labels.role}' 2>/dev/null || true; }

unsettled() {
	# The members that are not a primary or a replica (Patroni labels a member only while
	# its PostgreSQL runs: one starting, stopped or being rewound has no role), and a line
	# "missing" while the StatefulSet has fewer member pods than replicas.
	local want pods
	want=$(k get statefulset postgres -o jsonpath='{.spec.replicas}')
	pods=$(k get pods -l "$members" -o \
		jsonpath='{range .items[*]}{.metadata.name} {.metadata.labels.role}{"\n"}{end}')
	(($(grep -c . <<<"$pods") >= want)) || echo missing
	while read -r pod role; do
		[[ -z $pod || $role == primary || $role == replica ]] || echo "$pod"
	done <<<"$pods"
}

wait_settled() {
	# Until every member is a primary or a replica: a member in between (one rejoining
	# after a failover) is neither, and would be left out of the roll.
	local deadline=$((SECONDS + ${timeout%s})) left
	until left=$(unsettled) && [[ -z $left ]]; do
		((SECONDS < deadline)) || {
			echo "roll-postgres: members neither primary nor replica within $timeout: ${left//$'\n'/ }" >&2
			exit 1
		}
		sleep 2
	done
}

wait_role() {
	# Until member $1 is labelled role $2 and Ready (the StatefulSet recreates a deleted one).
	local deadline=$((SECONDS + ${timeout%s}))
	until [[ $(role_of "$1") == "$2" ]] &&
		k wait --for=condition=Ready "pod/$1" --timeout=5s >/dev/null 2>&1; do
		((SECONDS < deadline)) || {
			echo "roll-postgres: $1 not a Ready $2 within $timeout" >&2
			exit 1
		}
		sleep 2
	done
}

replace() {
	echo "roll-postgres: replacing $1"
	k delete pod "$1" --wait=true >/dev/null
	wait_role "$1" replica
}

wait_settled
for pod in $(outdated replica); do
	replace "$pod"
done

sync_standby() { k get configmap postgres-sync -o jsonpath='{.metadata.annotations.sync_standby}' 2>/dev/null || true; }

wait_sync_standby() {
	# Until Patroni has a synchronous standby again (a replaced replica may have been it):
	# strict mode switches over to none other.
	local deadline=$((SECONDS + ${timeout%s}))
	until [[ -n $(sync_standby) ]]; do
		((SECONDS < deadline)) || {
			echo "roll-postgres: no synchronous standby within $timeout" >&2
			exit 1
		}
		sleep 1
	done
}

primary=$(outdated primary)
if [[ -n $primary ]]; then
	wait_sync_standby
	# No candidate named: in synchronous mode Patroni hands over only to the synchronous
	# standby, and every replica is current by now.
	echo "roll-postgres: switching the primary over from $primary to its synchronous standby"
	k exec "$primary" -c postgres -- patronictl -c "$config" switchover --force \
		--leader "$primary" >/dev/null
	wait_role "$primary" replica
	replace "$primary"
fi
left=$(outdated)
[[ -z $left ]] || {
	echo "roll-postgres: still on an older revision: ${left//$'\n'/ }" >&2
	exit 1
}
echo "roll-postgres: every member runs revision $revision"
