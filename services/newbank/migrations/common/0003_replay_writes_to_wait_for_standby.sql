-- 0002 took a transaction id so that a replay's commit would wait for the synchronous standby. It
-- does not: PostgreSQL waits for the standby only when the transaction wrote WAL of its own, and an
-- xid alone writes none (checked with the standby's walreceiver stopped: the replay still answered
-- at once; chaos 1c still lost 8 acknowledged payments). A replay now rewrites its key row — a
-- WAL-logged no-op update — so its commit waits for the standby to confirm the WAL up to it, which
-- includes the first request's commit.
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
    -- The replay's commit must wait for the standby (see above): write something.
    UPDATE idempotency_key SET request_hash = request_hash WHERE scope = p_scope AND key = p_key;
    RETURN jsonb_build_object('status', prior.status_code, 'body', prior.response, 'replayed', true);
END $$;

-- One row per database session that needed a durable point before acting on what it read (the
-- outbox relay, before it publishes): writing its row makes the session's commit wait for the
-- synchronous standby. Keyed by backend pid, so relays never wait for each other.
CREATE TABLE IF NOT EXISTS replication_barrier (
    backend_pid integer     PRIMARY KEY,
    touched_at  timestamptz NOT NULL
);
