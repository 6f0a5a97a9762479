"""The transaction service's SQL, in one place (plain SQL, asyncpg placeholders).

Payments and refunds are whole server-side functions (migrations/bank/0002): one round trip each.
"""

MAKE_PAYMENT = "SELECT make_payment($1, $2, $3, $4, $5, $6, $7, $8)"
MAKE_REFUND = "SELECT make_refund($1, $2, $3, $4, $5, $6)"

# Who may see a payment: its merchant ($2), the customer it was taken from ($3); both NULL = admin.
PAYMENT = """
SELECT payment_json(p) FROM payment p
 WHERE p.id = $1 AND ($2::uuid IS NULL OR p.merchant_id = $2) AND ($3::uuid IS NULL OR p.customer_id = $3)
"""

# Newest first, keyset pagination on (created_at, id); $2 NULL = every merchant (the admin).
PAYMENT_PAGE = """
SELECT payment_json(p) AS body, p.created_at, p.id FROM payment p
 WHERE ($2::uuid IS NULL OR p.merchant_id = $2)
   AND ($3::timestamptz IS NULL OR (p.created_at, p.id) < ($3, $4::uuid))
 ORDER BY p.created_at DESC, p.id DESC
 LIMIT $1
"""

# A cashback outcome is applied only if it is newer than the one the payment shows.
UPDATE_CASHBACK = """
UPDATE payment SET cashback_status = $2, cashback_amount = $3, cashback_version = $4
 WHERE id = $1 AND cashback_version < $4
"""

# The same for a batch of outcomes, at most one per payment (the newest of the batch for each).
UPDATE_CASHBACKS = """
UPDATE payment p SET cashback_status = o.status, cashback_amount = o.amount, cashback_version = o.version
  FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::integer[]) AS o(id, status, amount, version)
 WHERE p.id = o.id AND p.cashback_version < o.version
"""
