"""The few Kubernetes requests toggler makes, as raw JSON, through the official client's `ApiClient`.

The generated API classes of the `kubernetes` client (≥ 35, pydantic-based) import a model module and build a
validator for every operation of their group: `AppsV1Api` and `CoreV1Api` together cost about 25 MiB of
resident memory, a quarter of toggler's, to build four URLs. toggler reads and writes plain JSON anyway
(`_preload_content=False` everywhere), so it builds those requests itself and sends them with the same
`ApiClient`: the same kubeconfig/in-cluster auth, token refresh, TLS, connection pool, timeouts and
`ApiException` on a non-2xx answer as the generated methods. Blocking: call from a worker thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

MERGE_PATCH = "application/merge-patch+json"
Query = Mapping[str, str | int | bool | None]
Timeout = float | tuple[float, float]

API_PATHS = {"Deployment": "/apis/apps/v1", "StatefulSet": "/apis/apps/v1", "Pod": "/api/v1"}


class ListCall(Protocol):
    """Lists (or, with `watch=true` in the query, watches) one resource in one namespace."""

    def __call__(self, namespace: str, query: Query, *, timeout: Timeout) -> Any: ...


class KubeRest:
    """Raw requests on `api` (an `ApiClient`)."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    def request(self, method: str, path: str, *, query: Query | None = None, body: Any = None,
                content_type: str | None = None, timeout: Timeout) -> Any:
        """Send; the unread urllib3 response of a 2xx answer, else `ApiException` (as the generated API)."""
        headers: dict[str, Any] = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        params = [(key, value) for key, value in (query or {}).items() if value is not None]
        method, url, headers, body, _ = self.api.param_serialize(
            method=method, resource_path=path, query_params=params, header_params=headers, body=body,
            auth_settings=["BearerToken"])
        response = self.api.call_api(method, url, header_params=headers, body=body, _request_timeout=timeout)
        raw = response.response
        if not 200 <= raw.status <= 299:
            raise ApiException.from_response(http_resp=raw, body=None, data=None)  # reads the body
        return raw

    def lister(self, kind: str, plural: str) -> ListCall:
        """A `ListCall` for `plural` (e.g. "deployments") of `kind`'s API group."""
        base = API_PATHS[kind]

        def list_call(namespace: str, query: Query, *, timeout: Timeout) -> Any:
            return self.request("GET", f"{base}/namespaces/{_seg(namespace)}/{plural}", query=query, timeout=timeout)

        return list_call

    def merge_patch(self, kind: str, plural: str, namespace: str, name: str, body: Mapping[str, Any], *,
                    subresource: str | None = None, timeout: Timeout) -> Any:
        """JSON merge patch of an object (or of its `subresource`, e.g. "scale")."""
        path = f"{API_PATHS[kind]}/namespaces/{_seg(namespace)}/{plural}/{_seg(name)}"
        if subresource:
            path += f"/{subresource}"
        return self.request("PATCH", path, body=dict(body), content_type=MERGE_PATCH, timeout=timeout)


def _seg(value: str) -> str:
    """One path segment, percent-encoded (names are DNS labels already; this only guards the URL)."""
    return quote(value, safe="")
