"""SIGKILL to processes of one pod, sent from its node (kind's node container: the pod's
processes are its own), as an OOM kill or a crash would end them: no handler runs, nothing is
flushed or handed over. The hard-kill check kills PostgreSQL's processes; the failover check
kills Patroni's too.
"""

from __future__ import annotations

from kubernetes import client

from harness.steps import probe

# Every process whose name is one of $3 (space-separated) and whose cgroup path holds the
# pod's UID ($1 as the cgroupfs driver writes it, $2 as systemd's does); the sandbox's pause
# is spared. The node image has no tr, so both spellings come from the caller. Prints how many.
KILL_POD_PROCESSES = """
killed=0
for dir in /proc/[0-9]*; do
  case " $3 " in *" $(cat "$dir/comm" 2>/dev/null) "*) ;; *) continue ;; esac
  if grep -q -e "$1" -e "$2" "$dir/cgroup" 2>/dev/null; then
    kill -9 "${dir#/proc/}" 2>/dev/null && killed=$((killed + 1))
  fi
done
echo "$killed"
"""


def kill_pod_processes(
    core: client.CoreV1Api, namespace: str, pod_name: str, commands: tuple[str, ...]
) -> int:
    """SIGKILL to every process of `pod_name` named one of `commands`; how many were killed."""
    pod = core.read_namespaced_pod(pod_name, namespace)
    argv = ["docker", "exec", pod.spec.node_name, "sh", "-c", KILL_POD_PROCESSES, "kill"]
    uid = pod.metadata.uid
    done = probe([*argv, uid, uid.replace("-", "_"), " ".join(commands)])
    assert done.returncode == 0, f"could not kill the processes of {pod_name}: {done.stderr}"
    return int(done.stdout.strip() or 0)
