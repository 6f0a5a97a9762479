"""A real Kubernetes API server (1.20.2, built by k8s/tools/build-kube-apiserver.sh) on Debian's etcd.

Both listen on 127.0.0.1, free ports, and are stopped by PID. Token auth (an admin token of
system:masters) and RBAC are on, so a ServiceAccount token (TokenRequest API) has exactly its
Role's rights. No controller-manager: Deployments do not get pods, which the operator's test does
not need (metrics come from a URL list, scale is the Deployment's subresource).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

CACHE = Path(os.environ.get("NEWBANK_CACHE", Path.home() / ".cache" / "newbank"))
APISERVER = Path(os.environ.get("NEWBANK_KUBE_APISERVER", CACHE / "bin" / "kube-apiserver"))
ETCD = Path(shutil.which("etcd") or "/usr/bin/etcd")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unavailable() -> str | None:
    if not APISERVER.exists():
        return f"{APISERVER} not built: run k8s/tools/build-kube-apiserver.sh (about 4-5 min on 2 cores)"
    if not ETCD.exists():
        return "etcd not found (Debian package etcd-server)"
    if not shutil.which("openssl"):
        return "openssl not found (ServiceAccount signing key)"
    return None


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


class KubeApiServer:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.admin_token = secrets.token_hex(16)
        self.port = free_port()
        self.etcd_port, self.etcd_peer_port = free_port(), free_port()
        self.etcd: subprocess.Popen[bytes] | None = None
        self.apiserver: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 90.0) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        logs = self.base / "logs"
        logs.mkdir(exist_ok=True)
        self.etcd = subprocess.Popen(
            [
                str(ETCD),
                "--name",
                "newbank-e2e",
                "--data-dir",
                str(self.base / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{self.etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{self.etcd_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{self.etcd_peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{self.etcd_peer_port}",
                "--initial-cluster",
                f"newbank-e2e=http://127.0.0.1:{self.etcd_peer_port}",
            ],
            stdout=(logs / "etcd.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        key = self.base / "sa.key"
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        subprocess.run(
            ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(self.base / "sa.pub")],
            check=True,
            capture_output=True,
        )
        (self.base / "tokens.csv").write_text(f"{self.admin_token},admin,admin-uid,system:masters\n")
        self.apiserver = subprocess.Popen(
            [
                str(APISERVER),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                "--insecure-port=0",
                f"--cert-dir={self.base / 'certs'}",
                f"--token-auth-file={self.base / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={self.base / 'sa.pub'}",
                f"--service-account-signing-key-file={key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--api-audiences=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.96.0.0/24",
                "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,DefaultStorageClass,ResourceQuota",
                "--disable-admission-plugins=ServiceAccount",
                "--profiling=false",
                "--logtostderr=true",
                "--v=1",
            ],
            stdout=(logs / "kube-apiserver.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.apiserver.poll() is not None:
                raise RuntimeError(f"kube-apiserver exited; see {logs / 'kube-apiserver.log'}")
            try:
                if self.client().get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"kube-apiserver not ready in {timeout_s}s; see {logs}")

    def stop(self) -> None:
        _stop(self.apiserver)
        _stop(self.etcd)

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            verify=False,
            timeout=10.0,
            headers={"Authorization": f"Bearer {token or self.admin_token}"},
        )

    def kubeconfig(self, path: Path, token: str | None = None) -> Path:
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: e2e\n  cluster:\n    server: {self.url}\n    insecure-skip-tls-verify: true\n"
            f"users:\n- name: e2e\n  user:\n    token: {token or self.admin_token}\n"
            "contexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: e2e\ncurrent-context: e2e\n"
        )
        return path

    def service_account_token(self, namespace: str, name: str) -> str:
        body: dict[str, Any] = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600},
        }
        with self.client() as api:
            response = api.post(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", json=body)
            response.raise_for_status()
            return str(response.json()["status"]["token"])
