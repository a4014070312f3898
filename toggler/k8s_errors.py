"""Turn `kubernetes`/`urllib3` failures into toggler's own one-line errors, and say which are worth a retry.

Owns the wording of every cluster error a user can see. Never puts an `ApiException` body (or its
`reason` text) into a message: only the HTTP status, our own description of the request and a short
network reason. The raw exception stays attached as `__cause__` for the log.
Adapter module: may import kubernetes and urllib3; must not import nio, apscheduler or aiohttp.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from toggler.ports import ClusterError, Conflict, Forbidden, NotFound, TargetRef, Unavailable


@dataclass(frozen=True)
class Op:
    """What toggler was doing: `patch deployments/scale` of a target, or `list statefulsets` in a namespace."""

    verb: str
    resource: str
    namespace: str
    ref: TargetRef | None = None

    def subject(self) -> str:
        """`web` (Deployment apps/web), or `deployments in namespace apps`."""
        if self.ref is not None:
            return f"`{self.ref.target}` ({self.ref.describe()})"
        return f"{self.resource} in namespace `{self.namespace}`"


@dataclass(frozen=True)
class Mapped:
    """Our error for a failure, and whether repeating the request may help."""

    error: ClusterError
    retryable: bool


def map_error(exc: BaseException, op: Op, *, timeout: float) -> Mapped:
    """Classify `exc` raised while doing `op` (request timeout `timeout` seconds)."""
    if isinstance(exc, ApiException):
        return _map_status(int(exc.status or 0), op)
    reason = network_reason(exc, timeout=timeout)
    if reason is None:
        return Mapped(ClusterError(f"unexpected error talking to the cluster ({type(exc).__name__})"), False)
    return Mapped(Unavailable(f"cluster unreachable ({reason})"), True)


def _map_status(status: int, op: Op) -> Mapped:
    if status == 404:
        if op.ref is not None:
            return Mapped(NotFound(f"{op.subject()} does not exist"), False)
        return Mapped(NotFound(f"{op.resource} in namespace `{op.namespace}` not found"), False)
    if status == 403:
        return Mapped(Forbidden(f"toggler may not {op.verb} {op.resource} in namespace `{op.namespace}`"), False)
    if status == 401:
        return Mapped(Forbidden("the cluster rejected toggler's credentials (HTTP 401)"), False)
    if status == 409:
        return Mapped(Conflict(f"{op.subject()} kept changing while toggler wrote to it; try again"), True)
    if status == 429 or status >= 500:
        return Mapped(Unavailable(f"cluster unreachable (HTTP {status})"), True)
    if status == 0:
        return Mapped(Unavailable("cluster unreachable (TLS or transport error)"), True)
    return Mapped(ClusterError(f"the cluster refused to {op.verb} {op.resource} of {op.subject()} (HTTP {status})"),
                  False)


def network_reason(exc: BaseException, *, timeout: float) -> str | None:
    """A few words for a network failure (`connection refused`, `no answer within 10 s`), else None."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        return network_reason(exc.reason, timeout=timeout)
    # NewConnectionError subclasses ConnectTimeoutError (a TimeoutError): test it before the timeouts.
    if isinstance(exc, urllib3.exceptions.NameResolutionError | socket.gaierror):
        return "host not found"
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return "connection refused" if _caused_by(exc, ConnectionRefusedError) else "cannot connect"
    if isinstance(exc, urllib3.exceptions.TimeoutError | socket.timeout | TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, urllib3.exceptions.SSLError | ssl.SSLError):
        return "TLS error"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, urllib3.exceptions.ProtocolError | ConnectionError):
        return "connection lost"
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return f"network error: {type(exc).__name__}"
    return None


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, kind) or "Connection refused" in str(seen) or "Errno 111" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
