"""Login: an explicit API server from the environment, else the ServiceAccount, else kubeconfig.

The connection is kept so the operator's own calls (scale, status, pods) use the same identity.
"""

from __future__ import annotations

import os
from typing import Any

import kopf

from newbank_operator.kube import KubeConnection

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
_connection: KubeConnection | None = None


def current_connection() -> KubeConnection:
    if _connection is None:
        raise RuntimeError("not logged in yet")
    return _connection


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.ConnectionInfo | None:
    global _connection
    server = os.environ.get("NEWBANK_OPERATOR_API_SERVER")
    if server:
        token_file = os.environ.get("NEWBANK_OPERATOR_API_TOKEN_FILE")
        token = open(token_file).read().strip() if token_file else os.environ.get("NEWBANK_OPERATOR_API_TOKEN")
        insecure = os.environ.get("NEWBANK_OPERATOR_API_INSECURE", "false").lower() == "true"
        info = kopf.ConnectionInfo(
            server=server,
            token=token or None,
            insecure=insecure,
            ca_path=os.environ.get("NEWBANK_OPERATOR_API_CA") or None,
        )
        _connection = KubeConnection(
            server, token=token or None, token_path=token_file, insecure=insecure, ca_path=info.ca_path
        )  # type: ignore[arg-type]
        return info
    info = kopf.login_with_service_account(settings=settings, **kwargs)
    if info is not None:
        _connection = KubeConnection(info.server, token_path=SERVICE_ACCOUNT_TOKEN, ca_path=info.ca_path)  # type: ignore[arg-type]
        return info
    info = kopf.login_with_kubeconfig(settings=settings, **kwargs)
    if info is not None:
        _connection = KubeConnection.from_kopf(info)
    return info
