"""Prometheus metrics: one registry per app instance (tests create several apps in one process).

Owns metric names and labels. Adapters call the small recording methods; the pure core never imports it.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from toggler.outcomes import Failed, NotReady, Outcome, Refused, Stopped, Usage
from toggler.ports import TargetStatus


def outcome_label(outcome: Outcome) -> str:
    """`ok`, `refused`, `usage`, `failed` for the commands counter."""
    if isinstance(outcome, Refused):
        return "refused"
    if isinstance(outcome, Usage):
        return "usage"
    if isinstance(outcome, Failed | NotReady):
        return "failed"
    return "ok"


class Metrics:
    """The metrics toggler exports at /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.commands = Counter(
            "toggler_commands", "Chat commands handled", ["action", "target", "outcome"], registry=self.registry
        )
        self.replicas = Gauge("toggler_target_replicas", "Desired replicas per target", ["target"],
                              registry=self.registry)
        self.deadline = Gauge("toggler_target_stop_deadline_seconds",
                              "Unix time of the auto-stop deadline (0: none)", ["target"], registry=self.registry)
        self.auto_stops = Counter("toggler_auto_stops", "Stops done by toggler itself", ["target", "reason"],
                                  registry=self.registry)
        self.last_sync = Gauge("toggler_last_sync_timestamp_seconds", "Unix time of the last successful sync",
                               registry=self.registry)

    def command(self, action: str, target: str | None, outcome: Outcome) -> None:
        """Count one handled command."""
        self.commands.labels(action=action, target=target or "", outcome=outcome_label(outcome)).inc()

    def target(self, status: TargetStatus) -> None:
        """Refresh the per-target gauges from a cached status."""
        name = status.ref.target
        self.replicas.labels(target=name).set(status.desired)
        self.deadline.labels(target=name).set(status.stop_at.timestamp() if status.stop_at else 0)

    def notified(self, outcome: Outcome) -> None:
        """Count auto-stops as they are reported to rooms."""
        if isinstance(outcome, Stopped) and outcome.reason and not outcome.already_off:
            self.auto_stops.labels(target=outcome.target, reason=outcome.reason).inc()

    def synced(self, when: datetime | float) -> None:
        """Record a successful sync."""
        self.last_sync.set(when.timestamp() if isinstance(when, datetime) else when)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
