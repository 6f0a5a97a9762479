"""Login: an explicit API server from the environment, else the ServiceAccount, else kubeconfig.

The connection is kept so the operator's own calls (scale, status, pods) use the same identity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kopf

from newbank_operator.config import OperatorConfig
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
    config = OperatorConfig()
    if config.api_server:
        token_file = config.api_token_file or None
        token = Path(token_file).read_text().strip() if token_file else config.api_token
        _connection = KubeConnection(
            config.api_server,
            token=token or None,
            token_path=token_file,
            insecure=config.api_insecure,
            ca_path=config.api_ca or None,
        )
        return kopf.ConnectionInfo(
            server=config.api_server, token=token or None, insecure=config.api_insecure, ca_path=config.api_ca or None
        )
    info = kopf.login_with_service_account(settings=settings, **kwargs)
    if info is not None:
        _connection = KubeConnection(
            info.server, token_path=SERVICE_ACCOUNT_TOKEN, ca_path=str(info.ca_path) if info.ca_path else None
        )
        return info
    info = kopf.login_with_kubeconfig(settings=settings, **kwargs)
    if info is not None:
        _connection = KubeConnection.from_kopf(info)
    return info
