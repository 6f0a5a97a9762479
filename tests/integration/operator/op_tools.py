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
