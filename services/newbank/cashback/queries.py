"""The cashback service's SQL (plain SQL, asyncpg)."""

# An account as the bank announced it (account.opened), or as a payment event reveals it first.
UPSERT_ACCOUNT_OPENED = """
INSERT INTO cashback_account (account_id, customer_id, currency, opened_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (account_id) DO UPDATE SET opened_at = COALESCE(cashback_account.opened_at, EXCLUDED.opened_at)
"""
ENSURE_ACCOUNT = """
INSERT INTO cashback_account (account_id, customer_id, currency) VALUES ($1, $2, $3)
ON CONFLICT (account_id) DO NOTHING
"""

_ENTRY_COLUMNS = """payment_id, account_id, merchant_id, status, currency, payment_amount, earned,
    refunded_amount, reversed_amount, entry_version, rate_bps, offer_version"""

# The entry of a payment, locked: a refund and its payment processed at once by two consumers wait
# for each other instead of both writing.
LOCK_ENTRY = f"SELECT {_ENTRY_COLUMNS} FROM cashback_entry WHERE payment_id = $1 FOR UPDATE"

# The latest offer version recorded at or before the payment (newbank.partners.offers decides if it
# covers the instant).
OFFER_AT = """
SELECT version, rate_bps, valid_from, valid_until, set_at FROM partner_offer
 WHERE merchant_id = $1 AND set_at <= $2
 ORDER BY version DESC LIMIT 1
"""

# One entry per payment: a concurrent insert of the same payment waits, then inserts nothing.
INSERT_ENTRY = f"""
INSERT INTO cashback_entry (payment_id, account_id, merchant_id, status, currency, debited_amount,
                            payment_amount, payment_currency, rate_bps, offer_version, earned,
                            payment_created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (payment_id) DO NOTHING
RETURNING {_ENTRY_COLUMNS}
"""

UPDATE_ENTRY_REFUNDED = """
UPDATE cashback_entry
   SET refunded_amount = $2, reversed_amount = $3, status = $4, entry_version = $5, updated_at = now()
 WHERE payment_id = $1
"""

RECORD_REFUND = """
INSERT INTO cashback_refund (refund_id, payment_id, amount, refunded_amount, reversed_now, created_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (refund_id) DO NOTHING
"""

ADD_TO_BALANCE = """
UPDATE cashback_account SET balance = balance + $2, updated_at = now() WHERE account_id = $1
"""

ADD_EVENT = "SELECT outbox_add($1, 'cashback', $2)"

# The account and a page of its entries (newest first) in one round trip. Entries with status
# 'none' earned nothing and are not listed.
ACCOUNT_WITH_ENTRIES = """
SELECT a.account_id, a.customer_id, a.currency, a.balance,
       COALESCE((
         SELECT jsonb_agg(jsonb_build_object(
                  'payment_id', e.payment_id, 'merchant_id', e.merchant_id,
                  'amount', e.earned - e.reversed_amount, 'earned', e.earned,
                  'reversed_amount', e.reversed_amount, 'status', e.status,
                  'created_at', rfc3339(e.created_at)) ORDER BY e.created_at DESC, e.payment_id DESC)
           FROM (SELECT * FROM cashback_entry e
                  WHERE e.account_id = a.account_id AND e.status <> 'none'
                    AND ($2::timestamptz IS NULL OR (e.created_at, e.payment_id) < ($2, $3::uuid))
                  ORDER BY e.created_at DESC, e.payment_id DESC
                  LIMIT $4) e), '[]'::jsonb) AS entries
  FROM cashback_account a
 WHERE a.account_id = $1
"""

REDEEM = "SELECT cashback_redeem($1, $2, $3)"

GET_REDEMPTION = """
SELECT r.customer_id, cashback_redemption_json(r) AS body FROM cashback_redemption r WHERE r.id = $1
"""

COMPLETE_REDEMPTION = """
UPDATE cashback_redemption
   SET status = 'completed', completed_at = COALESCE(completed_at, $3)
 WHERE id = $1 AND account_id = $2
RETURNING id
"""
