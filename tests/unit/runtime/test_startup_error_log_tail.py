"""A start-up failure quotes the end of the component's log: in CI the state folder is removed before
anyone can read it."""

from __future__ import annotations

from pathlib import Path

from newbank.runtime.procs import StartupError


def test_the_error_quotes_the_last_lines_of_the_log(tmp_path: Path) -> None:
    log = tmp_path / "rabbit@localhost.log"
    log.write_text("\n".join(f"boot step {i}" for i in range(100)) + "\n")
    message = str(StartupError("rabbitmq", "not ready after 90 s", log))
    assert message.startswith(f"rabbitmq: not ready after 90 s (log: {log})")
    assert "boot step 99" in message and "boot step 80" in message
    assert "boot step 79" not in message


def test_a_missing_log_leaves_the_message_as_it_was(tmp_path: Path) -> None:
    assert str(StartupError("etcd", "process exited", tmp_path / "absent.log")).endswith("absent.log)")
    assert str(StartupError("etcd", "process exited")) == "etcd: process exited"
