-- Payments and refunds as one server-side function each: one database round trip per request.
--
-- Each runs inside the caller's single statement, so the idempotency claim, the balance checks, the
-- postings, the business row, the outbox event and the stored answer commit together or not at all.
-- Answers: {"status", "body", "replayed"}; "problem": true marks a refusal (body is a problem+json).
-- Refusals of an invalid request are not kept (the claim is released); a 402 is a decision on the
-- money and is kept for replays like a 201.

CREATE FUNCTION refuse(p_scope text, p_key text, p_status integer, p_type text, p_detail text)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF p_status = 402 THEN
        RETURN idempotency_store(p_scope, p_key, p_status, problem(p_status, p_type, p_detail) -> 'body')
               || jsonb_build_object('problem', true);
    END IF;
    PERFORM idempotency_release(p_scope, p_key);
    RETURN problem(p_status, p_type, p_detail);
END $$;

CREATE FUNCTION make_payment(
    p_scope text, p_key text, p_hash text,
    p_merchant_id uuid, p_account_id uuid, p_amount bigint, p_currency text, p_reference text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_prior    jsonb;
    m          merchant%ROWTYPE;
    a          account%ROWTYPE;
    v_rate     numeric := 1;
    v_debited  bigint;
    v_id       uuid := gen_random_uuid();
    p          payment%ROWTYPE;
    v_body     jsonb;
BEGIN
    v_prior := idempotency_claim(p_scope, p_key, p_hash);
    IF v_prior IS NOT NULL THEN
        RETURN v_prior;
    END IF;

    SELECT * INTO m FROM merchant WHERE id = p_merchant_id;
    IF NOT FOUND THEN
        RETURN refuse(p_scope, p_key, 403, 'forbidden', 'unknown merchant');
    END IF;
    IF p_currency <> m.currency THEN
        RETURN refuse(p_scope, p_key, 422, 'currency-mismatch',
                      format('payments to this merchant are in %s', m.currency));
    END IF;
    SELECT * INTO a FROM account WHERE id = p_account_id AND kind = 'customer';
    IF NOT FOUND THEN
        RETURN refuse(p_scope, p_key, 404, 'account-not-found', 'no such customer account');
    END IF;

    IF a.currency = p_currency THEN
        v_debited := p_amount;
    ELSE
        SELECT rate INTO v_rate FROM fx_rate WHERE base = p_currency AND quote = a.currency;
        IF NOT FOUND THEN
            RETURN refuse(p_scope, p_key, 422, 'fx-rate-unavailable',
                          format('no FX rate %s/%s', p_currency, a.currency));
        END IF;
        v_debited := round_half_even(
            p_amount * v_rate * power(10::numeric, a.currency_exponent - m.currency_exponent));
        IF v_debited <= 0 THEN
            RETURN refuse(p_scope, p_key, 422, 'amount-too-small',
                          format('the amount converts to 0 %s', a.currency));
        END IF;
    END IF;

    -- No overdraft, ever: the debit happens only if the balance covers it (the row lock serialises
    -- concurrent payments from one account across every instance).
    UPDATE account SET balance = balance - v_debited WHERE id = a.id AND balance >= v_debited;
    IF NOT FOUND THEN
        RETURN refuse(p_scope, p_key, 402, 'insufficient-funds', 'the account balance does not cover this payment');
    END IF;
    UPDATE account SET balance = balance + p_amount WHERE id = m.settlement_account_id;

    INSERT INTO journal_entry (id, kind) VALUES (v_id, 'payment');
    IF a.currency = p_currency THEN
        INSERT INTO posting (journal_entry_id, account_id, currency, amount) VALUES
            (v_id, a.id, a.currency, -v_debited),
            (v_id, m.settlement_account_id, m.currency, p_amount);
    ELSE
        INSERT INTO posting (journal_entry_id, account_id, currency, amount) VALUES
            (v_id, a.id, a.currency, -v_debited),
            (v_id, system_account('fx', a.currency, a.currency_exponent), a.currency, v_debited),
            (v_id, system_account('fx', m.currency, m.currency_exponent), m.currency, -p_amount),
            (v_id, m.settlement_account_id, m.currency, p_amount);
    END IF;

    INSERT INTO payment (id, merchant_id, account_id, customer_id, amount, currency, debited_amount,
                         account_currency, fx_rate, reference)
    VALUES (v_id, m.id, a.id, a.customer_id, p_amount, p_currency, v_debited, a.currency, v_rate, p_reference)
    RETURNING * INTO p;
    v_body := payment_json(p);

    PERFORM outbox_add('payment.completed', 'transactions', jsonb_build_object(
        'payment_id', p.id, 'account_id', p.account_id, 'customer_id', p.customer_id,
        'merchant_id', p.merchant_id, 'amount', p.amount, 'currency', p.currency,
        'debited_amount', p.debited_amount, 'account_currency', p.account_currency,
        'fx_rate', v_body ->> 'fx_rate', 'created_at', v_body ->> 'created_at'));

    RETURN idempotency_store(p_scope, p_key, 201, v_body);
END $$;

CREATE FUNCTION make_refund(
    p_scope text, p_key text, p_hash text, p_merchant_id uuid, p_payment_id uuid, p_amount bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_prior        jsonb;
    p              payment%ROWTYPE;
    m              merchant%ROWTYPE;
    v_refunded     bigint;
    v_credit_total bigint;
    v_credit       bigint;
    v_id           uuid := gen_random_uuid();
    r              refund%ROWTYPE;
    v_body         jsonb;
    v_payment_json jsonb;
BEGIN
    v_prior := idempotency_claim(p_scope, p_key, p_hash);
    IF v_prior IS NOT NULL THEN
        RETURN v_prior;
    END IF;

    -- The payment row lock serialises refunds of one payment.
    SELECT * INTO p FROM payment WHERE id = p_payment_id FOR UPDATE;
    IF NOT FOUND OR p.merchant_id <> p_merchant_id THEN
        RETURN refuse(p_scope, p_key, 404, 'payment-not-found', 'no such payment for this merchant');
    END IF;
    v_refunded := p.refunded_amount + p_amount;
    IF v_refunded > p.amount THEN
        RETURN refuse(p_scope, p_key, 422, 'refund-exceeds-payment',
                      format('refunds would total %s, more than the payment''s %s', v_refunded, p.amount));
    END IF;
    -- The account gets back its share of debited_amount, computed on the cumulative total so that
    -- the refunds of a payment add up to exactly debited_amount when it is fully refunded.
    IF v_refunded = p.amount THEN
        v_credit_total := p.debited_amount;
    ELSE
        v_credit_total := round_half_even(p.debited_amount::numeric * v_refunded / p.amount);
    END IF;
    v_credit := v_credit_total - p.refunded_debited;

    SELECT * INTO m FROM merchant WHERE id = p.merchant_id;
    UPDATE account SET balance = balance - p_amount WHERE id = m.settlement_account_id AND balance >= p_amount;
    IF NOT FOUND THEN
        RETURN refuse(p_scope, p_key, 402, 'insufficient-funds',
                      'the merchant''s settlement balance does not cover this refund');
    END IF;
    IF v_credit > 0 THEN
        UPDATE account SET balance = balance + v_credit WHERE id = p.account_id;
    END IF;

    INSERT INTO journal_entry (id, kind) VALUES (v_id, 'refund');
    INSERT INTO posting (journal_entry_id, account_id, currency, amount)
    VALUES (v_id, m.settlement_account_id, m.currency, -p_amount);
    IF p.account_currency = p.currency THEN
        INSERT INTO posting (journal_entry_id, account_id, currency, amount)
        VALUES (v_id, p.account_id, p.account_currency, v_credit);
    ELSE
        INSERT INTO posting (journal_entry_id, account_id, currency, amount)
        VALUES (v_id, system_account('fx', m.currency, m.currency_exponent), m.currency, p_amount);
        IF v_credit > 0 THEN
            INSERT INTO posting (journal_entry_id, account_id, currency, amount) VALUES
                (v_id, system_account('fx', p.account_currency,
                        (SELECT currency_exponent FROM account WHERE id = p.account_id)),
                 p.account_currency, -v_credit),
                (v_id, p.account_id, p.account_currency, v_credit);
        END IF;
    END IF;

    INSERT INTO refund (id, payment_id, amount, currency, credited_amount)
    VALUES (v_id, p.id, p_amount, p.currency, v_credit) RETURNING * INTO r;
    UPDATE payment SET refunded_amount = v_refunded, refunded_debited = v_credit_total
     WHERE id = p.id RETURNING * INTO p;
    v_payment_json := payment_json(p);

    v_body := jsonb_build_object(
        'id', r.id, 'payment_id', r.payment_id, 'amount', r.amount, 'currency', r.currency,
        'credited_amount', r.credited_amount, 'created_at', rfc3339(r.created_at));

    PERFORM outbox_add('payment.refunded', 'transactions', jsonb_build_object(
        'refund_id', r.id, 'payment_id', p.id, 'account_id', p.account_id, 'customer_id', p.customer_id,
        'merchant_id', p.merchant_id, 'amount', r.amount, 'refunded_amount', p.refunded_amount,
        'payment_amount', p.amount, 'currency', p.currency, 'debited_amount', p.debited_amount,
        'credited_amount', r.credited_amount, 'account_currency', p.account_currency,
        'fx_rate', v_payment_json ->> 'fx_rate', 'payment_created_at', v_payment_json ->> 'created_at',
        'created_at', v_body ->> 'created_at'));

    RETURN idempotency_store(p_scope, p_key, 201, v_body);
END $$;
