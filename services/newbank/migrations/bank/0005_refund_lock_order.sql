-- make_refund takes its locks in make_payment's order (customer account, then settlement account).
--
-- 0002's make_refund locked the settlement account first and the customer account last, the reverse
-- of make_payment. Payments and refunds of one customer and merchant crossing each other deadlocked;
-- PostgreSQL resolves each deadlock only after deadlock_timeout (1 s), and under a burst the waits
-- queued past the services' 10 s statement timeout: 503s (found by the integration test
-- test_payments_and_refunds_crossing_never_fail_or_lose_money). The body is 0002's with one added
-- lock; everything else is unchanged.

CREATE OR REPLACE FUNCTION make_refund(
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
    -- Lock the customer account before the settlement account, in the order make_payment takes
    -- them, so a refund and a payment of the same pair never wait for each other in a cycle.
    PERFORM 1 FROM account WHERE id = p.account_id FOR UPDATE;
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
