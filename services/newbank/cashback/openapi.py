"""problem+json answers in the OpenAPI documents of the Cashback context's services, so clients and
schema checks (schemathesis) know every status a route may give.

The bank keeps the same helper in ``newbank.accounts.fields``; both belong in the core one day.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from newbank.errors import PROBLEM_JSON


class Problem(BaseModel):
    """RFC 9457 problem details, as every 4xx of the API answers."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


_PROBLEM_SCHEMA = Problem.model_json_schema()

# Any route may answer these: no or bad key, bad JSON, an invalid field, a body over 64 KiB.
COMMON_PROBLEMS = (400, 401, 413, 422)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"description": "problem details", "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}}}
        for status in statuses
    }
