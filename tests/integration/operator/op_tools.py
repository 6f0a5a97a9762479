"""Where the tests find helm: NEWBANK_HELM, the cache k8s/tools/get-helm.sh fills, or PATH."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def find_helm() -> str | None:
    cache = Path(os.environ.get("NEWBANK_CACHE", Path.home() / ".cache" / "newbank"))
    for candidate in (os.environ.get("NEWBANK_HELM"), str(cache / "bin" / "helm"), shutil.which("helm")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


async def purge_topology(management_url: str, user: str, password: str) -> None:
    """Empty every queue of the topology: the broker is shared with the other tests of the session."""
    from newbank.messaging.topology import TOPOLOGY
    from newbank_operator.rabbitmq import ManagementClient

    async with ManagementClient(management_url, user, password) as client:
        for name in TOPOLOGY.all_queue_names():
            try:
                await client._request("DELETE", f"/queues/%2F/{name}/contents")
            except Exception:  # a missing queue has nothing to purge; the broker may be stopped
                continue
