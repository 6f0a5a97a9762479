-- The accounts service's side of the bank: deposits as one server-side function (like payments),
-- the onboarding rate limit shared by every accounts instance, and payouts as a journal kind (money
-- leaving a settlement account for the merchant's own bank; no endpoint yet, but the ledger must
-- know the kind so that a settlement balance can be below what was paid in).

ALTER TABLE journal_entry DROP CONSTRAINT journal_entry_kind_check;
ALTER TABLE journal_entry ADD CONSTRAINT journal_entry_kind_check
    CHECK (kind IN ('deposit', 'payment', 'refund', 'cashback_redemption', 'payout'));

-- One row per client address and minute: a fixed window, counted in the database so that several
-- accounts instances behind the ingress share one limit.
CREATE TABLE onboarding_attempt (
    client_address text        NOT NULL,
    window_start   timestamptz NOT NULL,
    attempts       integer     NOT NULL,
    PRIMARY KEY (client_address, window_start)
);

CREATE FUNCTION onboarding_attempt_count(p_client text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_attempts integer;
BEGIN
    INSERT INTO onboarding_attempt AS o (client_address, window_start, attempts)
    VALUES (p_client, date_trunc('minute', now()), 1)
    ON CONFLICT (client_address, window_start) DO UPDATE SET attempts = o.attempts + 1
    RETURNING attempts INTO v_attempts;
    IF v_attempts = 1 THEN
        -- A new window for this address: a cheap moment to forget old windows.
        DELETE FROM onboarding_attempt WHERE window_start < now() - interval '10 minutes';
    END IF;
    RETURN v_attempts;
END $$;

-- A deposit: the bank's funding account pays the customer account. Answers like make_payment.
CREATE FUNCTION make_deposit(
    p_scope text, p_key text, p_hash text, p_account_id uuid, p_amount bigint, p_currency text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_prior   jsonb;
    a         account%ROWTYPE;
    v_id      uuid := gen_random_uuid();
    v_balance bigint;
    d         deposit%ROWTYPE;
BEGIN
    v_prior := idempotency_claim(p_scope, p_key, p_hash);
    IF v_prior IS NOT NULL THEN
        RETURN v_prior;
    END IF;
    SELECT * INTO a FROM account WHERE id = p_account_id AND kind = 'customer';
    IF NOT FOUND THEN
        RETURN refuse(p_scope, p_key, 404, 'account-not-found', 'no such customer account');
    END IF;
    IF a.currency <> p_currency THEN
        RETURN refuse(p_scope, p_key, 422, 'currency-mismatch',
                      format('this account holds %s', a.currency));
    END IF;
    UPDATE account SET balance = balance + p_amount WHERE id = a.id RETURNING balance INTO v_balance;
    INSERT INTO journal_entry (id, kind) VALUES (v_id, 'deposit');
    INSERT INTO posting (journal_entry_id, account_id, currency, amount) VALUES
        (v_id, system_account('funding', a.currency, a.currency_exponent), a.currency, -p_amount),
        (v_id, a.id, a.currency, p_amount);
    INSERT INTO deposit (id, account_id, amount, currency) VALUES (v_id, a.id, p_amount, a.currency)
    RETURNING * INTO d;
    RETURN idempotency_store(p_scope, p_key, 201, jsonb_build_object(
        'id', d.id, 'account_id', d.account_id, 'amount', d.amount, 'currency', d.currency,
        'balance', v_balance, 'created_at', rfc3339(d.created_at)));
END $$;

-- A redeemed cashback reaches the bank account once: the cashback funding account pays it.
-- Returns the journal entry id, or NULL when this redemption was credited already.
CREATE FUNCTION credit_redemption(p_redemption_id uuid, p_account_id uuid, p_amount bigint, p_currency text)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    a    account%ROWTYPE;
    v_id uuid := gen_random_uuid();
BEGIN
    PERFORM 1 FROM cashback_credit WHERE redemption_id = p_redemption_id;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO a FROM account WHERE id = p_account_id AND kind = 'customer' FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'redemption % names no customer account %', p_redemption_id, p_account_id
            USING ERRCODE = 'no_data_found';
    END IF;
    IF a.currency <> p_currency THEN
        RAISE EXCEPTION 'redemption % is in %, the account holds %', p_redemption_id, p_currency, a.currency
            USING ERRCODE = 'data_exception';
    END IF;
    INSERT INTO journal_entry (id, kind) VALUES (v_id, 'cashback_redemption');
    INSERT INTO posting (journal_entry_id, account_id, currency, amount) VALUES
        (v_id, system_account('cashback', a.currency, a.currency_exponent), a.currency, -p_amount),
        (v_id, a.id, a.currency, p_amount);
    UPDATE account SET balance = balance + p_amount WHERE id = a.id;
    INSERT INTO cashback_credit (redemption_id, account_id, amount, journal_entry_id)
    VALUES (p_redemption_id, a.id, p_amount, v_id);
    RETURN v_id;
END $$;
