"""The few Kubernetes API calls the operator makes itself (kopf makes the rest), over httpx.

It logs in the way kopf did (the same ``kopf.ConnectionInfo``), so the operator's own calls use the
same identity and the RBAC of its ServiceAccount proves sufficient. A token from a file is re-read
on every request: projected ServiceAccount tokens rotate.
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from newbank_operator.constants import GROUP, PLURAL, RESTARTED_AT_ANNOTATION, VERSION

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


class KubeError(Exception):
    """The API server said no (the status code and its message are in the text)."""


@dataclass(frozen=True)
class KubeConnection:
    server: str
    token: str | None = None
    token_path: str | None = None
    ca_path: str | None = None
    ca_data: bytes | None = None
    insecure: bool = False

    @classmethod
    def from_kopf(cls, info: Any) -> KubeConnection:
        """From a ``kopf.ConnectionInfo`` (what the login handler returned)."""
        return cls(
            server=info.server,
            token=info.token,
            ca_path=info.ca_path,
            ca_data=info.ca_data.encode() if isinstance(info.ca_data, str) else info.ca_data,
            insecure=bool(info.insecure),
        )

    def bearer(self) -> str | None:
        if self.token_path:
            return Path(self.token_path).read_text().strip()
        return self.token


def _verify(conn: KubeConnection) -> ssl.SSLContext | bool:
    if conn.insecure or conn.server.startswith("http://"):
        return False
    if conn.ca_data:
        data = conn.ca_data if b"BEGIN" in conn.ca_data else base64.b64decode(conn.ca_data)
        return ssl.create_default_context(cadata=data.decode())
    if conn.ca_path:
        return ssl.create_default_context(cafile=conn.ca_path)
    return True


class KubeApi:
    def __init__(self, conn: KubeConnection, timeout_s: float = 10.0) -> None:
        self.conn = conn
        self._http = httpx.AsyncClient(base_url=conn.server.rstrip("/"), verify=_verify(conn), timeout=timeout_s)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        json: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        all_headers = dict(headers or {})
        token = self.conn.bearer()
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        response = await self._http.request(method, path, json=json, headers=all_headers, params=params)
        if response.status_code >= 400:
            raise KubeError(f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json() if response.content else None

    # Deployments and their scale subresource
    def _deployment(self, namespace: str, name: str) -> str:
        return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"

    async def get_scale(self, namespace: str, name: str) -> tuple[int, int]:
        """(spec.replicas, status.replicas) of the Deployment's scale subresource."""
        scale = await self._call("GET", self._deployment(namespace, name) + "/scale")
        return int(scale["spec"].get("replicas") or 0), int(scale.get("status", {}).get("replicas") or 0)

    async def set_scale(self, namespace: str, name: str, replicas: int) -> None:
        body = {"spec": {"replicas": replicas}}
        await self._call("PATCH", self._deployment(namespace, name) + "/scale", body, MERGE_PATCH)

    async def restart_deployment(self, namespace: str, name: str, at: str) -> None:
        """What ``kubectl rollout restart`` does: a new pod-template annotation."""
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: at}}}}}
        await self._call("PATCH", self._deployment(namespace, name), body, MERGE_PATCH)

    async def ready_pod_urls(self, namespace: str, deployment: str, port: int) -> list[str]:
        """Base URLs of the Deployment's ready pods (by its selector's matchLabels)."""
        spec = (await self._call("GET", self._deployment(namespace, deployment)))["spec"]
        labels = spec.get("selector", {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        params = {"labelSelector": selector} if selector else None
        pods = await self._call("GET", f"/api/v1/namespaces/{namespace}/pods", params=params)
        urls = []
        for pod in pods.get("items", []):
            status = pod.get("status", {})
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))
            if ready and status.get("podIP") and not pod["metadata"].get("deletionTimestamp"):
                urls.append(f"http://{status['podIP']}:{port}")
        return sorted(urls)

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        secret = await self._call("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    # The custom resource's status subresource
    async def patch_platform_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"
        await self._call("PATCH", path, {"status": status}, MERGE_PATCH)
