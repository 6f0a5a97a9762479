"""The cashback service's SQL (plain SQL, asyncpg)."""

# An account as the bank announced it (account.opened), or as a payment event reveals it first.
UPSERT_ACCOUNT_OPENED = """
INSERT INTO cashback_account (account_id, customer_id, currency, opened_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (account_id) DO UPDATE SET opened_at = COALESCE(cashback_account.opened_at, EXCLUDED.opened_at)
"""
_ENTRY_COLUMNS = """payment_id, account_id, merchant_id, status, currency, payment_amount, earned,
    refunded_amount, reversed_amount, entry_version, rate_bps, offer_version"""

# One round trip before deciding: the payment's entry, locked (a refund and its payment processed at
# once by two consumers wait for each other), and the latest offer version recorded at or before the
# payment (newbank.partners.offers decides whether it covers the instant). Both may be absent.
ENTRY_AND_OFFER = f"""
SELECT e.*, o.version AS offer_version_in_force, o.rate_bps AS offer_rate_bps, o.valid_from AS offer_valid_from,
       o.valid_until AS offer_valid_until, o.set_at AS offer_set_at
  FROM (SELECT 1) AS one
  LEFT JOIN LATERAL (SELECT {_ENTRY_COLUMNS} FROM cashback_entry WHERE payment_id = $1 FOR UPDATE) e ON true
  LEFT JOIN LATERAL (
        SELECT version, rate_bps, valid_from, valid_until, set_at FROM partner_offer
         WHERE merchant_id = $2 AND set_at <= $3
         ORDER BY version DESC LIMIT 1) o ON true
"""

# One round trip to record a payment's cashback: the entry (once per payment: a concurrent insert of
# the same payment waits, then inserts nothing and returns no row), the credit to the account (made
# here if no account.opened came first), and the cashback event ($14 NULL: none, the caller announces).
CREATE_ENTRY = f"""
WITH entry AS (
    INSERT INTO cashback_entry (payment_id, account_id, merchant_id, status, currency, debited_amount,
                                payment_amount, payment_currency, rate_bps, offer_version, earned,
                                payment_created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
    ON CONFLICT (payment_id) DO NOTHING
    RETURNING {_ENTRY_COLUMNS}
), credit AS (
    INSERT INTO cashback_account AS a (account_id, customer_id, currency, balance)
    SELECT entry.account_id, $13, entry.currency, entry.earned FROM entry
    ON CONFLICT (account_id) DO UPDATE SET balance = a.balance + EXCLUDED.balance, updated_at = now()
     WHERE EXCLUDED.balance <> 0
)
SELECT entry.*, CASE WHEN $14::text IS NOT NULL THEN outbox_add($14, 'cashback', $15::jsonb) END AS event_id
  FROM entry
"""

# The batch form of the two above, for a run of payment.completed events (crediting.on_payments_completed).
# First: per payment, whether its entry exists, and the latest offer version recorded at or before it.
# An existing entry is not locked: a payment.completed that finds one changes nothing.
ENTRIES_AND_OFFERS = """
SELECT p.ord, e.payment_id IS NOT NULL AS known,
       o.version AS offer_version_in_force, o.rate_bps AS offer_rate_bps, o.valid_from AS offer_valid_from,
       o.valid_until AS offer_valid_until, o.set_at AS offer_set_at
  FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) WITH ORDINALITY AS p(payment_id, merchant_id, created_at, ord)
  LEFT JOIN cashback_entry e ON e.payment_id = p.payment_id
  LEFT JOIN LATERAL (
        SELECT version, rate_bps, valid_from, valid_until, set_at FROM partner_offer
         WHERE merchant_id = p.merchant_id AND set_at <= p.created_at
         ORDER BY version DESC LIMIT 1) o ON true
 ORDER BY p.ord
"""

# Then the new entries (each payment once: one made meanwhile by a competing consumer is skipped), each
# account credited once with the sum of its new entries, and one cashback event per new entry, in order.
CREATE_ENTRIES = f"""
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::bigint[],
                         $7::bigint[], $8::text[], $9::integer[], $10::integer[], $11::bigint[],
                         $12::timestamptz[], $13::uuid[], $14::text[], $15::text[])
        WITH ORDINALITY AS i(payment_id, account_id, merchant_id, status, currency, debited_amount,
                             payment_amount, payment_currency, rate_bps, offer_version, earned,
                             payment_created_at, customer_id, event_type, event_data, ord)
), entry AS (
    INSERT INTO cashback_entry (payment_id, account_id, merchant_id, status, currency, debited_amount,
                                payment_amount, payment_currency, rate_bps, offer_version, earned,
                                payment_created_at)
    SELECT payment_id, account_id, merchant_id, status, currency, debited_amount, payment_amount,
           payment_currency, rate_bps, offer_version, earned, payment_created_at
      FROM input ORDER BY ord
    ON CONFLICT (payment_id) DO NOTHING
    RETURNING {_ENTRY_COLUMNS}
), credit AS (
    INSERT INTO cashback_account AS a (account_id, customer_id, currency, balance)
    SELECT entry.account_id, (array_agg(input.customer_id))[1], entry.currency, sum(entry.earned)::bigint
      FROM entry JOIN input USING (payment_id)
     GROUP BY entry.account_id, entry.currency
    ON CONFLICT (account_id) DO UPDATE SET balance = a.balance + EXCLUDED.balance, updated_at = now()
     WHERE EXCLUDED.balance <> 0
)
SELECT count(*) FROM (
    SELECT outbox_add(input.event_type, 'cashback', input.event_data::jsonb)
      FROM entry JOIN input USING (payment_id) ORDER BY input.ord) AS announced
"""

# One round trip to apply a refund: its record, the entry's new amounts ($11: only if they changed),
# the debit of what is reversed now ($5), and the cashback event ($13 NULL: nothing to announce).
APPLY_REFUND = """
WITH refund AS (
    INSERT INTO cashback_refund (refund_id, payment_id, amount, refunded_amount, reversed_now, created_at)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (refund_id) DO NOTHING
), entry AS (
    UPDATE cashback_entry
       SET refunded_amount = $7, reversed_amount = $8, status = $9, entry_version = $10, updated_at = now()
     WHERE payment_id = $2 AND $11::boolean
), debit AS (
    UPDATE cashback_account SET balance = balance - $5, updated_at = now() WHERE account_id = $12 AND $5 <> 0
)
SELECT CASE WHEN $13::text IS NOT NULL THEN outbox_add($13, 'cashback', $14::jsonb) END
"""

# The account and a page of its entries (newest first) in one round trip. Entries with status
# 'none' earned nothing and are not listed. The page comes as JSON text, sent as it is (no decoding
# and re-encoding in Python), with what the next page's cursor needs: the oldest entry's key.
ACCOUNT_WITH_ENTRIES = """
SELECT a.account_id, a.customer_id, a.currency, a.balance,
       COALESCE(page.entries, '[]') AS entries, COALESCE(page.size, 0) AS size,
       page.last_created_at, page.last_payment_id
  FROM cashback_account a
  LEFT JOIN LATERAL (
         SELECT jsonb_agg(jsonb_build_object(
                  'payment_id', e.payment_id, 'merchant_id', e.merchant_id,
                  'amount', e.earned - e.reversed_amount, 'earned', e.earned,
                  'reversed_amount', e.reversed_amount, 'status', e.status,
                  'created_at', rfc3339(e.created_at)) ORDER BY e.created_at DESC, e.payment_id DESC)::text AS entries,
                count(*) AS size,
                rfc3339(min(e.created_at)) AS last_created_at,
                (array_agg(e.payment_id ORDER BY e.created_at, e.payment_id))[1] AS last_payment_id
           FROM (SELECT * FROM cashback_entry e
                  WHERE e.account_id = a.account_id AND e.status <> 'none'
                    AND ($2::timestamptz IS NULL OR (e.created_at, e.payment_id) < ($2, $3::uuid))
                  ORDER BY e.created_at DESC, e.payment_id DESC
                  LIMIT $4) e) page ON true
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
