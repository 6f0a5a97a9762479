"""The accounts service's SQL, in one place (plain SQL, asyncpg placeholders)."""

CUSTOMERS_BY_KEY = "SELECT api_key_hash, id FROM customer WHERE api_key_hash = ANY($1::text[])"
MERCHANTS_BY_KEY = "SELECT api_key_hash, id FROM merchant WHERE api_key_hash = ANY($1::text[])"

INSERT_CUSTOMER = """
INSERT INTO customer (name, country, email, api_key_hash) VALUES ($1, $2, $3, $4)
RETURNING id, name, country, email, created_at
"""

CUSTOMER_EXISTS = "SELECT EXISTS (SELECT 1 FROM customer WHERE id = $1)"

INSERT_CUSTOMER_ACCOUNT = """
INSERT INTO account (kind, customer_id, currency, currency_exponent, balance)
VALUES ('customer', $1, $2, $3, 0)
RETURNING id, customer_id, currency, balance, created_at
"""

# A customer sees only its own accounts ($2 NULL: the admin sees every one).
CUSTOMER_ACCOUNT = """
SELECT id, customer_id, currency, balance, created_at FROM account
 WHERE id = $1 AND kind = 'customer' AND ($2::uuid IS NULL OR customer_id = $2)
"""

MAKE_DEPOSIT = "SELECT make_deposit($1, $2, $3, $4, $5, $6)"

UPSERT_FX_RATE = """
INSERT INTO fx_rate (base, quote, rate, updated_at) VALUES ($1, $2, $3, now())
ON CONFLICT (base, quote) DO UPDATE SET rate = EXCLUDED.rate, updated_at = EXCLUDED.updated_at
RETURNING base, quote, rate, updated_at
"""

FX_RATE = "SELECT base, quote, rate, updated_at FROM fx_rate WHERE base = $1 AND quote = $2"

ONBOARDING_ADMIT = "SELECT onboarding_admit($1, $2)"

INSERT_SETTLEMENT_ACCOUNT = """
INSERT INTO account (kind, currency, currency_exponent, balance) VALUES ('settlement', $1, $2, 0)
RETURNING id
"""

INSERT_MERCHANT = """
INSERT INTO merchant (name, country, currency, currency_exponent, website, category, api_key_hash,
                      settlement_account_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id, name, country, currency, website, category, settlement_account_id, created_at
"""

MERCHANT_WITH_SETTLEMENT = """
SELECT m.id, m.name, m.country, m.currency, m.website, m.category, m.created_at,
       m.settlement_account_id, a.balance AS settlement_balance
  FROM merchant m JOIN account a ON a.id = m.settlement_account_id
 WHERE m.id = $1
"""

ADD_EVENT = "SELECT outbox_add($1, $2, $3)"

CREDIT_REDEMPTION = "SELECT credit_redemption($1, $2, $3, $4)"

# Stored answers older than the retention ($1 hours), oldest first, at most $2 of them.
PRUNE_IDEMPOTENCY_KEYS = """
DELETE FROM idempotency_key WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM idempotency_key
     WHERE created_at < now() - make_interval(hours => $1::int) AND status_code IS NOT NULL
     ORDER BY created_at LIMIT $2))
"""
