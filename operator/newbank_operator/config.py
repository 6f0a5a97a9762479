"""The operator process's settings (environment, prefix NEWBANK_OPERATOR_) and kopf's configuration."""

from __future__ import annotations

import logging

import kopf
from pydantic_settings import BaseSettings, SettingsConfigDict

from newbank_operator.constants import PEERING_NAME


class OperatorConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEWBANK_OPERATOR_", extra="ignore")

    # The namespace to watch (the chart sets it to the release's namespace: the RBAC is a Role).
    namespace: str = "default"
    peering: str = PEERING_NAME
    # Replicas need distinct priorities: kopf pauses every peer on a tie. Unset: __main__ draws one.
    peering_priority: int = 0
    # Seconds a silent peer counts as alive (the standby takes over after this).
    peering_lifetime_s: int = 60
    # Off only in tests without the peering CRD (kmock).
    peering_enabled: bool = True
    request_timeout_s: float = 10.0
    # The services' admin key: their /internal/outbox/flush refuses a flush without it (401).
    admin_token: str = ""
    # kopf's liveness probe endpoint (the Deployment's livenessProbe); empty switches it off.
    liveness_endpoint: str = "http://0.0.0.0:8080/healthz"
    log_level: str = "INFO"
    # An explicit API server (tests, running outside the cluster); empty: ServiceAccount, else kubeconfig.
    api_server: str = ""
    api_token: str = ""
    api_token_file: str = ""
    api_insecure: bool = False
    api_ca: str = ""


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """kopf's knobs: peering so that two replicas never act at once, no status-based diff storage."""
    settings.peering.name = config.peering
    settings.peering.priority = config.peering_priority
    settings.peering.mandatory = config.peering_enabled
    settings.peering.standalone = not config.peering_enabled
    settings.peering.clusterwide = False
    settings.peering.lifetime = config.peering_lifetime_s
    settings.posting.level = logging.WARNING  # handler warnings become Events; our Events are explicit
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="newbank.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="newbank.io")
    settings.scanning.disabled = True  # our resources are known: no cluster-wide CRD watch (RBAC)
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = config.request_timeout_s
