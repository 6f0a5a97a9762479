"""The framework ceiling: FastAPI + uvicorn answering a payment-shaped POST without doing anything.

Run in one uvicorn process with the transaction service's limits (50% CPU / 300 MB), it tells how many
requests per second the framework alone allows on this machine; the payments/s of one transaction
instance divided by this is the share of the budget that the real work (auth, SQL, JSON) leaves.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import FastAPI
from pydantic import BaseModel

# Telemetry off as in the services (service_app.py): the same framework work per request.
app = FastAPI(title="framework ceiling", telemetry={"tracing": False, "metrics": False, "logs": False})


class PaymentIn(BaseModel):
    account_id: str
    amount: int
    currency: str
    reference: str | None = None


@app.post("/api/v1/payments", status_code=201)
async def pay(payment: PaymentIn) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "status": "completed",
        "account_id": payment.account_id,
        "amount": payment.amount,
        "currency": payment.currency,
        "debited_amount": payment.amount,
        "fx_rate": "1",
        "created_at": datetime.now(UTC).isoformat(),
        "cashback": {"status": "pending"},
    }


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
