"""Why a workload's pods are not ready, read from raw (JSON) pods: `ImagePullBackOff`, `Unschedulable`….

Pure module (dicts in, a short string out); used by `toggler.cluster` when a readiness wait times out and
`list pods` is permitted. Must not import kubernetes, nio, apscheduler or aiohttp.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def _matches(pod: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    own = (pod.get("metadata") or {}).get("labels") or {}
    return all(own.get(key) == value for key, value in labels.items())


def pod_reason(pod: Mapping[str, Any]) -> str | None:
    """The waiting reason of the first stuck container, else why the pod is unscheduled."""
    status = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(key) or ():
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason and reason not in ("ContainerCreating", "PodInitializing"):
                return str(reason)
    for condition in status.get("conditions") or ():
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return str(condition.get("reason") or "Unschedulable")
    return None


def waiting_reason(pods: Iterable[Mapping[str, Any]], labels: Mapping[str, str]) -> str | None:
    """`pod web-7c9: ImagePullBackOff` for the first matching pod with a reason, else None."""
    for pod in pods:
        if not _matches(pod, labels) or (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        reason = pod_reason(pod)
        if reason:
            return f"pod {(pod.get('metadata') or {}).get('name', '?')}: {reason}"
    return None
