-- The redemption function answers an unknown (or someone else's) account with the same problem type
-- as the cashback API's other routes: cashback-account-not-found.

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
            RETURN problem(404, 'cashback-account-not-found', 'no cashback account with this id for this key');
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
