"""One daemon per CashbackPlatform: a round every sync period until the resource goes away.

The daemon's ``spec`` is kopf's live view, so a changed policy applies from the next round. State
(metric samples, recommendations, recovery memory) lives in the daemon: peering makes sure only one
operator replica runs it.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import kopf

from newbank_operator.config import OperatorConfig
from newbank_operator.constants import GROUP, PLURAL, REASON_ERROR, VERSION
from newbank_operator.control import ControlState
from newbank_operator.handlers.handle_login import current_connection
from newbank_operator.kube import KubeApi, KubeError
from newbank_operator.reconcile import reconcile_platform
from newbank_operator.spec import parse_spec


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0, initial_delay=1.0)
async def run_platform(
    name: str,
    namespace: str,
    spec: kopf.Spec,
    body: kopf.Body,
    status: kopf.Status,
    stopped: kopf.DaemonStopped,
    logger: logging.Logger,
    **_: Any,
) -> None:
    state = ControlState()

    def emit(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)

    kube = KubeApi(current_connection())
    admin_token = OperatorConfig().admin_token
    headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
    async with httpx.AsyncClient(timeout=5.0, headers=headers) as http:
        try:
            while not stopped:
                policy = parse_spec(spec)
                try:
                    new_status = await reconcile_platform(
                        kube,
                        http,
                        namespace,
                        policy,
                        state,
                        dict(status),
                        emit,
                        generation=body.metadata.get("generation"),
                    )
                    await kube.patch_platform_status(namespace, name, new_status)
                except (KubeError, httpx.HTTPError) as exc:
                    logger.warning("round failed: %s", exc)
                    emit("Warning", REASON_ERROR, str(exc)[:1000])
                except Exception as exc:  # a bug must not stop the platform's loop; say it loudly
                    logger.exception("round crashed")
                    emit("Warning", REASON_ERROR, f"round crashed: {exc!r}"[:1000])
                await stopped.wait(policy.sync_period_s)
        finally:
            await kube.aclose()
