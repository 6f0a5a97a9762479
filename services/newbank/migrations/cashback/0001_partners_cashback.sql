-- The cashback database: partner stores and their versioned offers (partners service), cashback
-- accounts, entries, refunds and redemptions (cashback service).

-- A merchant becomes a partner store when merchant.registered arrives.
CREATE TABLE partner_store (
    merchant_id   uuid        PRIMARY KEY,
    name          text        NOT NULL,
    country       text        NOT NULL,
    currency      text        NOT NULL,
    category      text,
    website       text,
    -- The last offer version given out; bumped by an UPDATE, so concurrent changes serialize.
    offer_version integer     NOT NULL DEFAULT 0,
    registered_at timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX partner_store_country ON partner_store (country, merchant_id);
CREATE INDEX partner_store_category ON partner_store (category, merchant_id);

-- Every change of a merchant's offer is a new version, never an update: the offer in force at a
-- payment's created_at is the latest version recorded at or before it (set_at), if that version's
-- own window [valid_from, valid_until) contains the instant and its rate is not 0 (0 = ended).
-- A version never applies before it was recorded, so a late event gets the same answer as a prompt one.
CREATE TABLE partner_offer (
    merchant_id uuid        NOT NULL REFERENCES partner_store (merchant_id),
    version     integer     NOT NULL CHECK (version > 0),
    rate_bps    integer     NOT NULL CHECK (rate_bps BETWEEN 0 AND 5000),
    valid_from  timestamptz,
    valid_until timestamptz,
    set_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    set_by      text        NOT NULL,
    PRIMARY KEY (merchant_id, version),
    CHECK (valid_until IS NULL OR valid_from IS NULL OR valid_until > valid_from)
);
CREATE INDEX partner_offer_set_at ON partner_offer (merchant_id, set_at DESC);

-- A bank account as the cashback side knows it (from account.opened or a payment event).
-- The balance may go below zero: a refund reverses cashback that may already have been redeemed.
CREATE TABLE cashback_account (
    account_id  uuid        PRIMARY KEY,
    customer_id uuid        NOT NULL,
    currency    text        NOT NULL,
    balance     bigint      NOT NULL DEFAULT 0,
    opened_at   timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cashback_account_customer ON cashback_account (customer_id);

-- One entry per payment, whatever the number of deliveries of its events (primary key payment_id).
CREATE TABLE cashback_entry (
    payment_id         uuid        PRIMARY KEY,
    account_id         uuid        NOT NULL REFERENCES cashback_account (account_id),
    merchant_id        uuid        NOT NULL,
    status             text        NOT NULL CHECK (status IN ('credited', 'none', 'reversed')),
    currency           text        NOT NULL,   -- the account's currency
    debited_amount     bigint      NOT NULL CHECK (debited_amount >= 0),
    payment_amount     bigint      NOT NULL CHECK (payment_amount > 0),
    payment_currency   text        NOT NULL,
    rate_bps           integer     NOT NULL CHECK (rate_bps BETWEEN 0 AND 5000),
    offer_version      integer,
    earned             bigint      NOT NULL CHECK (earned >= 0),
    refunded_amount    bigint      NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0),
    reversed_amount    bigint      NOT NULL DEFAULT 0 CHECK (reversed_amount >= 0),
    entry_version      integer     NOT NULL DEFAULT 1,
    payment_created_at timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (reversed_amount <= earned),
    CHECK (refunded_amount <= payment_amount)
);
CREATE INDEX cashback_entry_account ON cashback_entry (account_id, created_at DESC, payment_id DESC);

-- The refunds seen, for the record (the arithmetic uses the cumulative refunded amount of the entry).
CREATE TABLE cashback_refund (
    refund_id       uuid        PRIMARY KEY,
    payment_id      uuid        NOT NULL REFERENCES cashback_entry (payment_id),
    amount          bigint      NOT NULL,
    refunded_amount bigint      NOT NULL,
    reversed_now    bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    processed_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cashback_redemption (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id   uuid        NOT NULL REFERENCES cashback_account (account_id),
    customer_id  uuid        NOT NULL,
    amount       bigint      NOT NULL CHECK (amount > 0),
    currency     text        NOT NULL,
    status       text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'completed')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE INDEX cashback_redemption_account ON cashback_redemption (account_id, created_at DESC);

CREATE OR REPLACE FUNCTION cashback_redemption_json(r cashback_redemption)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id, 'account_id', r.account_id, 'amount', r.amount, 'currency', r.currency,
        'status', r.status, 'created_at', rfc3339(r.created_at), 'completed_at', rfc3339(r.completed_at));
$$;

-- A redemption in one round trip: owner check, debit only if the balance covers it, the row, and the
-- cashback.redeemed event in the outbox. Returns {status, body} for newbank.idempotency.Outcome.
CREATE OR REPLACE FUNCTION cashback_redeem(p_account_id uuid, p_customer_id uuid, p_amount bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a cashback_account%ROWTYPE;
    r cashback_redemption%ROWTYPE;
BEGIN
    UPDATE cashback_account SET balance = balance - p_amount, updated_at = now()
     WHERE account_id = p_account_id AND customer_id = p_customer_id AND balance >= p_amount
    RETURNING * INTO a;
    IF NOT FOUND THEN
        SELECT * INTO a FROM cashback_account WHERE account_id = p_account_id AND customer_id = p_customer_id;
        IF NOT FOUND THEN
            RETURN problem(404, 'not-found', 'cashback account not found');
        END IF;
        RETURN problem(402, 'insufficient-cashback',
                       format('the cashback balance is %s, less than %s', a.balance, p_amount));
    END IF;
    INSERT INTO cashback_redemption (account_id, customer_id, amount, currency)
    VALUES (a.account_id, a.customer_id, p_amount, a.currency)
    RETURNING * INTO r;
    PERFORM outbox_add('cashback.redeemed', 'cashback', jsonb_build_object(
        'redemption_id', r.id, 'account_id', r.account_id, 'customer_id', r.customer_id,
        'amount', r.amount, 'currency', r.currency, 'created_at', rfc3339(r.created_at)));
    RETURN jsonb_build_object('status', 202, 'body', jsonb_build_object(
        'id', r.id, 'account_id', r.account_id, 'amount', r.amount, 'currency', r.currency,
        'status', r.status, 'created_at', rfc3339(r.created_at)));
END $$;
