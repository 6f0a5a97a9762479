"""`newbank up` hands the service settings in its environment to every instance, and nothing else."""

from __future__ import annotations

from newbank.runtime.instances import tuning_from_environment


def test_only_service_settings_pass() -> None:
    environ = {
        "NEWBANK_CONSUMER_PREFETCH": "256",
        "NEWBANK_OUTBOX_COALESCE_MS": "25",
        "NEWBANK_HOME": "/tmp/x",  # the runtime's own, not a service setting
        "NEWBANK_PORT_BASE": "18700",
        "PATH": "/usr/bin",
        "newbank_consumer_batch_size": "8",  # not the variable's spelling
    }
    assert tuning_from_environment(environ) == {"NEWBANK_CONSUMER_PREFETCH": "256", "NEWBANK_OUTBOX_COALESCE_MS": "25"}
