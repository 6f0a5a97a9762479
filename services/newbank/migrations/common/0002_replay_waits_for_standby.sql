-- A replay must not acknowledge what the synchronous standby may not have.
--
-- With synchronous replication a commit waits for the standby; if that wait is cancelled (a
-- statement timeout, or the old primary cut off by a failover while Patroni is gone) the transaction
-- stays committed *locally* and becomes visible there. A retry with the same Idempotency-Key on that
-- node then found the stored 201 and answered it — as a read-only transaction, which commits without
-- waiting for anyone. After the failover that payment does not exist: an acknowledged payment lost
-- (found by the chaos test "primary-patroni", issue 7).
--
-- Taking a transaction id makes the replay's own commit write a commit record and wait for the
-- standby to confirm the WAL up to it — which includes the first request's commit. On a healthy
-- primary that is a millisecond; on an isolated old primary the replay waits, times out, and the
-- client retries until it reaches the real primary.
CREATE OR REPLACE FUNCTION idempotency_claim(p_scope text, p_key text, p_hash text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    prior idempotency_key%ROWTYPE;
BEGIN
    INSERT INTO idempotency_key (scope, key, request_hash) VALUES (p_scope, p_key, p_hash)
    ON CONFLICT (scope, key) DO NOTHING;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO prior FROM idempotency_key WHERE scope = p_scope AND key = p_key;
    IF prior.request_hash <> p_hash THEN
        RETURN problem(409, 'idempotency-key-reused',
                       'this Idempotency-Key was used with a different request');
    END IF;
    IF prior.status_code IS NULL THEN
        RETURN problem(409, 'idempotency-key-in-progress',
                       'the first request with this Idempotency-Key is still running; retry shortly');
    END IF;
    PERFORM txid_current();  -- see above: the commit of this replay now waits for the standby
    RETURN jsonb_build_object('status', prior.status_code, 'body', prior.response, 'replayed', true);
END $$;
