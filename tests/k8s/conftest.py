"""Fixtures of the chart/CRD/handler tests: the kopf-ready API emulator and a metrics source."""

from __future__ import annotations

import itertools
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import pytest_asyncio
from kmock._internal import apps, enums

sys.path.insert(0, str(Path(__file__).parents[1] / "integration" / "operator"))

from op_load_metrics import LoadMetricsServer
from op_tools import find_helm


class KopfReadyEmulator(kmock.KubernetesEmulator):
    """kmock's emulator, stamping ``uid`` and ``resourceVersion`` like a real API server.

    kopf 1.45 needs both: without a resourceVersion its finalizer patch fails and the create
    handlers never run.
    """

    _versions = itertools.count(1000)

    async def _handle(self, request: Any) -> Any:
        if request.resource is not None and isinstance(request.data, dict):
            meta = (
                request.data.setdefault("metadata", {})
                if request.action in (enums.action.CREATE, enums.action.UPDATE)
                else None
            )
            if meta is not None:
                meta["resourceVersion"] = str(next(self._versions))
                if request.namespace:
                    meta.setdefault("namespace", request.namespace)
                if request.action == enums.action.CREATE:
                    if not meta.get("name") and meta.get("generateName"):
                        meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
                    meta.setdefault("uid", str(uuid.uuid4()))
                    meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
                    meta.setdefault("generation", 1)
        return await super()._handle(request)


@pytest_asyncio.fixture
async def kube_emulator() -> AsyncIterator[KopfReadyEmulator]:
    async with KopfReadyEmulator() as emulator, apps.Server(emulator):
        yield emulator


@pytest.fixture
def load_metrics() -> Iterator[LoadMetricsServer]:
    server = LoadMetricsServer().start()
    try:
        yield server
    finally:
        server.stop()


REPO = Path(__file__).parents[2]
CHART = REPO / "charts" / "newbank"


@pytest.fixture(scope="session")
def helm() -> str:
    path = find_helm()
    if path is None:
        pytest.skip("helm not found: run k8s/tools/get-helm.sh (fetches helm 3.17 into ~/.cache/newbank/bin)")
    return path
