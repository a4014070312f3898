"""`toggler conntest`: a ✓/✗ checklist of everything the bot needs, for people and init containers.

Checks, in order: the homeserver answers `GET /_matrix/client/versions`; the credentials work (a stored
session is checked with `whoami` only; without one, or when its token is dead, a login as a throw-away
device that is logged out again at once, so no device is left behind and the stored one is never touched);
the store directory is writable; the Kubernetes API answers `GET /version`; and for each target: the
object exists, and `patch` on it and on its `/scale` subresource is allowed (SelfSubjectAccessReview: the
API server's authorizer, normally RBAC, decides). Exit 0 when all pass, 1 otherwise, 2 for an invalid
config. Every request has a timeout, nothing is written to the cluster, no secret is printed.
Adapter module: nio, aiohttp and kubernetes are imported inside the checks (the CLI imports this module).
"""
# ruff: noqa: PLC0415  (heavy adapters are imported lazily so `toggler --help` stays light)

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from toggler.config import Config, MatrixConfig
from toggler.loader import ConfigError, load_config
from toggler.ports import TargetRef
from toggler.rbac import RESOURCES

if TYPE_CHECKING:
    from kubernetes import client

log = logging.getLogger(__name__)
HELP = "check homeserver, credentials, store and Kubernetes access; exit 0 when all pass (init container)"
MATRIX_TIMEOUT = 10.0
"""Seconds for each Matrix request (no retries)."""
CHECK_TIMEOUT = 45.0
"""Upper bound for one check (a JWT login with its Keycloak round trip, plus the logout)."""
READERS = {"Deployment": "read_namespaced_deployment", "StatefulSet": "read_namespaced_stateful_set"}
Out = Callable[[str], object]


class Result(NamedTuple):
    """One line of the checklist."""

    ok: bool
    text: str


def _echo(line: str) -> None:
    print(line, flush=True)  # an init container's log shows progress even when stdout is a pipe


async def _guarded(label: str, check: Awaitable[Result | list[Result]]) -> list[Result]:
    """Run one check with an upper time bound; a bug or a hang becomes a ✗ line, never a traceback."""
    try:
        result = await asyncio.wait_for(check, CHECK_TIMEOUT)
    except TimeoutError:
        return [Result(False, f"{label}: no result within {CHECK_TIMEOUT:g} s")]
    except Exception as exc:
        log.debug("conntest check %s failed", label, exc_info=True)
        return [Result(False, f"{label}: unexpected error ({type(exc).__name__})")]
    return result if isinstance(result, list) else [result]


# --- Matrix -------------------------------------------------------------------------------------------------

def _network_reason(exc: BaseException) -> str:
    import aiohttp

    if isinstance(exc, TimeoutError):
        return f"no answer within {MATRIX_TIMEOUT:g} s"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS error"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, socket.gaierror):
            return "host not found"
        return "connection refused" if isinstance(exc.os_error, ConnectionRefusedError) else "cannot connect"
    return type(exc).__name__


async def check_homeserver(matrix: MatrixConfig) -> Result:
    """`GET /_matrix/client/versions` answers 200 with a list of versions."""
    import aiohttp

    url = matrix.homeserver.rstrip("/")
    try:
        timeout = aiohttp.ClientTimeout(total=MATRIX_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(f"{url}/_matrix/client/versions") as rsp:
            if rsp.status != 200:
                return Result(False, f"homeserver {url}: /_matrix/client/versions answered HTTP {rsp.status}")
            versions = (await rsp.json(content_type=None)).get("versions")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Result(False, f"homeserver {url} unreachable ({_network_reason(exc)})")
    except (ValueError, AttributeError):
        versions = None
    if not isinstance(versions, list) or not versions:
        return Result(False, f"homeserver {url}: /_matrix/client/versions is not a Matrix answer")
    return Result(True, f"homeserver {url} reachable (Matrix {versions[-1]})")


def _client_config() -> Any:
    from nio import AsyncClientConfig

    return AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False, max_timeouts=0,
                             max_limit_exceeded=0, request_timeout=MATRIX_TIMEOUT)


def _same_account(configured: str, user_id: str) -> bool:
    return configured == user_id if configured.startswith("@") else user_id[1:].split(":", 1)[0] == configured


async def check_credentials(matrix: MatrixConfig) -> Result:
    """The stored session via `whoami`; else (or when its token is dead) a login that is logged out again."""
    from nio import AsyncClient, ErrorResponse, WhoamiResponse

    from toggler.matrix import logguard
    from toggler.matrix.session import NETWORK_ERRORS, UNKNOWN_TOKEN, CredentialsFile, describe

    logguard.install()  # nio's records never show a token, whatever the log level
    creds = CredentialsFile(Path(matrix.store_path)).load()
    if creds is None or not _same_account(matrix.user_id, creds.user_id):
        return await _login_probe(matrix, "no stored session")
    client = AsyncClient(matrix.homeserver.rstrip("/"), creds.user_id, config=_client_config())
    client.restore_login(creds.user_id, creds.device_id, creds.access_token)  # no store: encryption is off
    try:
        response = await client.whoami()
    except NETWORK_ERRORS as exc:
        return Result(False, f"credentials: homeserver unreachable ({_network_reason(exc)})")
    finally:
        await client.close()
    where = f"stored session of {creds.user_id} on device {creds.device_id}"
    if isinstance(response, WhoamiResponse) and response.user_id == creds.user_id \
            and response.device_id in (None, creds.device_id):
        return Result(True, f"credentials: {where} is valid (whoami; no login)")
    if isinstance(response, ErrorResponse) and response.status_code != UNKNOWN_TOKEN:
        return Result(False, f"credentials: whoami for the {where} failed ({describe(response)})")
    return await _login_probe(matrix, f"the {where} is no longer valid; the bot will log in again on that device")


async def _login_probe(matrix: MatrixConfig, note: str) -> Result:
    """Log in as a throw-away device (store in a temp dir) and log it out again right away."""
    from toggler.matrix.session import LoginFailed, Session

    with tempfile.TemporaryDirectory(prefix="toggler-conntest-") as tmp:
        probe = matrix.model_copy(update={"store_path": Path(tmp), "device_name": f"{matrix.device_name} conntest"})
        try:
            session = Session(probe, client_config=_client_config())
        except LoginFailed as exc:
            return Result(False, f"credentials: {exc} ({note})")
        try:
            await session.open()
            user, device = session.user_id, session.device_id
            reason = await _log_out(session.client)
        except LoginFailed as exc:
            return Result(False, f"credentials: {exc} ({note})")
        finally:
            if session.logged_in:  # logout failed or was interrupted: one more try to remove the device
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(session.client.logout(), MATRIX_TIMEOUT)
            await session.close()
    if reason:
        return Result(False, f"credentials: login as {user} works, but test device {device} could not be logged "
                             f"out ({reason}); delete it by hand")
    return Result(True, f"credentials: login as {user} works; test device {device} logged out again ({note})")


async def _log_out(client: Any) -> str:
    """Log the client's device out; returns why that failed, or "" on success."""
    from nio import ErrorResponse

    from toggler.matrix.session import NETWORK_ERRORS, describe

    try:
        response = await client.logout()
    except NETWORK_ERRORS as exc:
        return _network_reason(exc)
    return describe(response) if isinstance(response, ErrorResponse) else ""


def check_store(store: Path) -> Result:
    """Create the store directory (as the bot would), then write and remove a temporary file in it."""
    existed = store.is_dir()
    try:
        store.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(prefix=".conntest-", dir=store)
        try:
            os.write(fd, b"conntest\n")
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        return Result(False, f"store {store} is not writable ({exc.strerror or type(exc).__name__})")
    return Result(True, f"store {store} is writable{'' if existed else ' (created)'}")


# --- Kubernetes -----------------------------------------------------------------------------------------------

class Kube(NamedTuple):
    """An API client and the timeout (seconds) of every request."""

    api: client.ApiClient
    timeout: float

    async def call(self, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
        """A client call in a worker thread; returns the decoded JSON body."""
        from toggler.cluster import run_blocking

        def go() -> Any:
            response = fn(_request_timeout=self.timeout, _preload_content=False, **kwargs)
            try:
                return json.loads(response.data or b"{}")
            finally:
                response.release_conn()
        return await asyncio.to_thread(run_blocking, go)

    def problem(self, exc: Exception, verb: str, resource: str, namespace: str) -> str:
        """Our one-line wording of a failure (never the API's response body)."""
        from toggler.k8s_errors import Op, map_error

        return str(map_error(exc, Op(verb, resource, namespace), timeout=self.timeout).error).replace("`", "")


async def check_kubernetes(config: Config, configuration: client.Configuration | None) -> list[Result]:
    """The API answers `GET /version`; then every target's checks (or one ✗ each when unreachable)."""
    from kubernetes import client

    from toggler.cluster import load_configuration
    from toggler.ports import ClusterError

    not_checked = [Result(False, f"target {name}: not checked (Kubernetes unavailable)") for name in config.targets]
    try:
        if configuration is None:
            configuration = await asyncio.to_thread(load_configuration, config.kubernetes)
    except ClusterError as exc:
        return [Result(False, f"Kubernetes: {exc}"), *not_checked]
    cfg = copy.deepcopy(configuration)
    cfg.retries = False  # one bounded attempt per request
    kube = Kube(client.ApiClient(cfg), config.kubernetes.request_timeout.total_seconds())
    try:
        try:
            version = await kube.call(client.VersionApi(kube.api).get_code)
        except Exception as exc:
            status = getattr(exc, "status", None)  # 401 and network failures: the adapter's wording
            problem = f"HTTP {status} on GET /version" if status and status != 401 else kube.problem(exc, "", "", "")
            return [Result(False, f"Kubernetes API: {problem}"), *not_checked]
        results = [Result(True, f"Kubernetes API reachable ({version.get('gitVersion', 'version unknown')})")]
        per_target = await asyncio.gather(*(_target_checks(kube, config, name) for name in config.targets))
        return results + [line for lines in per_target for line in lines]
    finally:
        await asyncio.to_thread(kube.api.close)


async def _target_checks(kube: Kube, config: Config, name: str) -> list[Result]:
    """The object exists (`get`), and toggler may `patch` its `/scale` and itself."""
    from kubernetes import client

    target = config.targets[name]
    ref = TargetRef(name, target.kind, target.namespace, config.object_name(name))
    try:
        await kube.call(getattr(client.AppsV1Api(kube.api), READERS[ref.kind]), name=ref.name, namespace=ref.namespace)
        exists = Result(True, f"target {name}: {ref.describe()} exists")
    except Exception as exc:
        missing = getattr(exc, "status", None) == 404
        plural = RESOURCES[ref.kind]
        text = f"{ref.describe()} does not exist" if missing else kube.problem(exc, "get", plural, ref.namespace)
        exists = Result(False, f"target {name}: {text}")
    return [exists, *[await _may_patch(kube, ref, subresource) for subresource in ("scale", None)]]


async def _may_patch(kube: Kube, ref: TargetRef, subresource: str | None) -> Result:
    """Ask the API server (SelfSubjectAccessReview) whether toggler may `patch` the object or its subresource."""
    from kubernetes import client

    plural = RESOURCES[ref.kind]
    what = f"patch {plural}{'/' + subresource if subresource else ''} {ref.name} in namespace {ref.namespace}"
    attributes = client.V1ResourceAttributes(namespace=ref.namespace, verb="patch", group="apps", resource=plural,
                                             subresource=subresource, name=ref.name)
    body = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attributes))
    try:
        review = await kube.call(client.AuthorizationV1Api(kube.api).create_self_subject_access_review, body=body)
    except Exception as exc:
        problem = kube.problem(exc, "create", "selfsubjectaccessreviews", ref.namespace)
        return Result(False, f"target {ref.target}: cannot ask whether toggler may {what} ({problem})")
    status = review.get("status") or {}
    if status.get("allowed") is True and not status.get("denied"):
        return Result(True, f"target {ref.target}: may {what}")
    reason = str(status.get("reason") or "").strip()[:120]  # the authorizer's words (RBAC usually gives none)
    return Result(False, f"target {ref.target}: may not {what} (denied{': ' + reason if reason else ''})")


# --- the checklist ----------------------------------------------------------------------------------------------

async def conntest(config: Config, *, kube_configuration: client.Configuration | None = None,
                   out: Out = _echo) -> bool:
    """Run every check, write one ✓/✗ line each and a summary to `out`; True when all passed.

    `kube_configuration` replaces the one `toggler run` would load from `config.kubernetes` (for tests).
    """
    results: list[Result] = []

    def emit(lines: list[Result]) -> None:
        for line in lines:
            results.append(line)
            out(f"{'✓' if line.ok else '✗'} {line.text}")

    matrix = config.matrix
    homeserver = await _guarded("homeserver", check_homeserver(matrix))
    emit(homeserver)
    if homeserver[0].ok:
        emit(await _guarded("credentials", check_credentials(matrix)))
    else:
        emit([Result(False, "credentials: not checked (homeserver unreachable)")])
    emit(await _guarded("store", asyncio.to_thread(check_store, Path(matrix.store_path))))
    emit(await _guarded("Kubernetes", check_kubernetes(config, kube_configuration)))
    failed = sum(not line.ok for line in results)
    out(f"{failed} of {len(results)} checks failed" if failed else f"all {len(results)} checks passed")
    return not failed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config` after the subcommand too (SUPPRESS keeps a global `--config`)."""
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="config file (default: $TOGGLER_CONFIG, else /etc/toggler/config.yaml, else the legacy "
                             "variables)")


def run(args: argparse.Namespace) -> int:
    """The `conntest` handler: 0 all checks pass, 1 some failed, 2 invalid config."""
    try:
        loaded = load_config(getattr(args, "config", None), read_secrets=True)
    except ConfigError as exc:
        print(f"invalid config ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    from toggler.cli import register_config_secrets  # cli imports this module

    register_config_secrets(loaded.config)
    if not getattr(args, "log_level", None):
        logging.getLogger("nio").setLevel(logging.ERROR)  # e.g. nio's schema warning on every failed login
    _echo(f"toggler conntest: config from {loaded.source}")
    return 0 if asyncio.run(conntest(loaded.config)) else 1
