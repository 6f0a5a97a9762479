"""Chaos runs: a failure injected into a running platform under payment load, then proof.

One run (``scenarios.run_scenario``) = a world made through the public API (``world``), a bounded
payment load whose client retries with the same Idempotency-Key (``load``), one fault and its recovery
(``faults``), then the after-run checks (``checks``): every acknowledged payment exists with its
postings, nothing is applied twice, the ledger verifies, cashback is credited exactly once, and no
process is left behind. ``report`` turns the run into a timeline and figures. Shared by
``tests/chaos`` and ``newbank chaos <scenario>``.
"""
