"""toggler: switch Kubernetes workloads on and off from Matrix chat."""

__version__ = "0.1.0"
