"""What happened when during a chaos run: marks on a wall clock, recovery times, findings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from newbank.chaos.world import Target


@dataclass
class Mark:
    at: float  # wall-clock seconds
    label: str
    detail: str = ""


@dataclass
class Run:
    """The state one fault coroutine works on: the platform, the clock, and what it measured."""

    target: Target
    marks: list[Mark] = field(default_factory=list)
    recovery_s: dict[str, float] = field(default_factory=dict)  # e.g. "promoted": 21.3 (s after the fault)
    findings: list[str] = field(default_factory=list)  # something that did not go as the design says
    facts: dict[str, object] = field(default_factory=dict)  # e.g. the PID killed, queue depth at the kill
    fault_at: float = 0.0
    say: Callable[[str], None] = field(default=lambda _: None)

    def mark(self, label: str, detail: str = "") -> float:
        now = time.time()
        self.marks.append(Mark(now, label, detail))
        offset = f"+{now - self.fault_at:6.1f}s" if self.fault_at else "   start"
        self.say(f"  {offset}  {label}{': ' + detail if detail else ''}")
        return now

    def fault(self, detail: str) -> None:
        self.fault_at = time.time()
        self.mark("fault injected", detail)

    def since_fault(self) -> float:
        return time.time() - self.fault_at

    async def wait_for(
        self,
        label: str,
        predicate: Callable[[], bool],
        timeout_s: float,
        interval_s: float = 0.2,
        *,
        required: bool = True,
    ) -> float | None:
        """Poll ``predicate`` (in a thread: it may block on HTTP or SQL); mark and time the moment it holds."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                ok = await asyncio.to_thread(predicate)
            except Exception:
                ok = False
            if ok:
                self.mark(label)
                elapsed = self.since_fault()
                self.recovery_s[label] = round(elapsed, 2)
                return elapsed
            await asyncio.sleep(interval_s)
        self.mark(f"NOT {label}", f"within {timeout_s:.0f} s")
        if required:
            self.findings.append(f"{label}: not within {timeout_s:.0f} s")
        return None
