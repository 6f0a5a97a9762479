-- The bank: customers, merchants, accounts, a double-entry ledger, payments and refunds.
--
-- Postings are signed from the account holder's side (+ credits the account, - debits it); the
-- postings of one journal entry sum to zero per currency. Customer and settlement accounts keep a
-- balance (updated in the same transaction as their postings, never below zero: the CHECK is the
-- last line of defence, the conditional UPDATE the first). The bank's own accounts (funding, FX
-- position, cashback funding) keep no stored balance, so they are never a hot row: theirs is the sum
-- of their postings.

CREATE TABLE customer (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text        NOT NULL,
    country      char(2)     NOT NULL,
    email        text,
    api_key_hash text        NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE account (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    kind              text        NOT NULL CHECK (kind IN ('customer', 'settlement', 'system')),
    customer_id       uuid        REFERENCES customer (id),
    currency          char(3)     NOT NULL,
    currency_exponent smallint    NOT NULL CHECK (currency_exponent BETWEEN 0 AND 4),
    balance           bigint,
    system_code       text        UNIQUE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'system') = (balance IS NULL)),
    CHECK (balance IS NULL OR balance >= 0),
    CHECK ((kind = 'customer') = (customer_id IS NOT NULL)),
    CHECK ((kind = 'system') = (system_code IS NOT NULL))
);
CREATE INDEX account_customer ON account (customer_id) WHERE customer_id IS NOT NULL;

CREATE TABLE merchant (
    id                    uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name                  text        NOT NULL,
    country               char(2)     NOT NULL,
    currency              char(3)     NOT NULL,
    currency_exponent     smallint    NOT NULL,
    website               text,
    category              text,
    api_key_hash          text        NOT NULL UNIQUE,
    settlement_account_id uuid        NOT NULL UNIQUE REFERENCES account (id),
    created_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE journal_entry (
    id         uuid        PRIMARY KEY,
    kind       text        NOT NULL CHECK (kind IN ('deposit', 'payment', 'refund', 'cashback_redemption')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE posting (
    id               bigserial   PRIMARY KEY,
    journal_entry_id uuid        NOT NULL REFERENCES journal_entry (id),
    account_id       uuid        NOT NULL REFERENCES account (id),
    currency         char(3)     NOT NULL,
    amount           bigint      NOT NULL CHECK (amount <> 0),
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX posting_account ON posting (account_id);
CREATE INDEX posting_journal_entry ON posting (journal_entry_id);

CREATE TABLE fx_rate (
    base       char(3)     NOT NULL,
    quote      char(3)     NOT NULL,
    rate       numeric     NOT NULL CHECK (rate > 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (base, quote),
    CHECK (base <> quote)
);

CREATE TABLE deposit (
    id         uuid        PRIMARY KEY REFERENCES journal_entry (id),
    account_id uuid        NOT NULL REFERENCES account (id),
    amount     bigint      NOT NULL CHECK (amount > 0),
    currency   char(3)     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE payment (
    id               uuid        PRIMARY KEY REFERENCES journal_entry (id),
    merchant_id      uuid        NOT NULL REFERENCES merchant (id),
    account_id       uuid        NOT NULL REFERENCES account (id),
    customer_id      uuid        NOT NULL REFERENCES customer (id),
    amount           bigint      NOT NULL CHECK (amount > 0),
    currency         char(3)     NOT NULL,
    debited_amount   bigint      NOT NULL CHECK (debited_amount > 0),
    account_currency char(3)     NOT NULL,
    fx_rate          numeric     NOT NULL,
    refunded_amount  bigint      NOT NULL DEFAULT 0,   -- in the payment's currency
    refunded_debited bigint      NOT NULL DEFAULT 0,   -- given back to the account, in its currency
    reference        text,
    cashback_status  text        NOT NULL DEFAULT 'pending'
                                 CHECK (cashback_status IN ('pending', 'credited', 'none', 'reversed')),
    cashback_amount  bigint,
    cashback_version integer     NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (refunded_amount BETWEEN 0 AND amount),
    CHECK (refunded_debited BETWEEN 0 AND debited_amount)
);
CREATE INDEX payment_merchant_newest ON payment (merchant_id, created_at DESC, id DESC);
CREATE INDEX payment_newest ON payment (created_at DESC, id DESC);
CREATE INDEX payment_account ON payment (account_id);

CREATE TABLE refund (
    id              uuid        PRIMARY KEY REFERENCES journal_entry (id),
    payment_id      uuid        NOT NULL REFERENCES payment (id),
    amount          bigint      NOT NULL CHECK (amount > 0),
    currency        char(3)     NOT NULL,
    credited_amount bigint      NOT NULL CHECK (credited_amount >= 0),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refund_payment ON refund (payment_id);

-- Cashback redemptions credited to bank accounts (the accounts service's side of cashback.redeemed).
CREATE TABLE cashback_credit (
    redemption_id uuid        PRIMARY KEY,
    account_id    uuid        NOT NULL REFERENCES account (id),
    amount        bigint      NOT NULL CHECK (amount > 0),
    journal_entry_id uuid     NOT NULL REFERENCES journal_entry (id),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- The bank's own account for a purpose and a currency ('funding', 'fx', 'cashback'), made on first use.
CREATE FUNCTION system_account(p_purpose text, p_currency text, p_exponent smallint)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    v_code text := p_purpose || ':' || p_currency;
    v_id uuid;
BEGIN
    SELECT id INTO v_id FROM account WHERE system_code = v_code;
    IF FOUND THEN
        RETURN v_id;
    END IF;
    INSERT INTO account (kind, currency, currency_exponent, system_code)
    VALUES ('system', p_currency, p_exponent, v_code)
    ON CONFLICT (system_code) DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        SELECT id INTO v_id FROM account WHERE system_code = v_code;
    END IF;
    RETURN v_id;
END $$;

CREATE FUNCTION payment_json(p payment)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', p.id,
        'status', 'completed',
        'account_id', p.account_id,
        'merchant_id', p.merchant_id,
        'amount', p.amount,
        'currency', p.currency,
        'debited_amount', p.debited_amount,
        'account_currency', p.account_currency,
        'fx_rate', CASE WHEN p.fx_rate = 1 THEN '1' ELSE rtrim(rtrim(p.fx_rate::text, '0'), '.') END,
        'refunded_amount', p.refunded_amount,
        'reference', p.reference,
        'created_at', rfc3339(p.created_at),
        'cashback', CASE WHEN p.cashback_amount IS NULL
                         THEN jsonb_build_object('status', p.cashback_status)
                         ELSE jsonb_build_object('status', p.cashback_status, 'amount', p.cashback_amount) END);
$$;
