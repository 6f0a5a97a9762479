-- Shared by every database: idempotency keys, the transactional outbox, the consumers' inbox.

CREATE TABLE IF NOT EXISTS idempotency_key (
    scope        text        NOT NULL,   -- the caller: 'admin', 'merchant:<id>', 'customer:<id>'
    key          text        NOT NULL,
    request_hash text        NOT NULL,
    status_code  integer,                -- NULL while the first request is still running
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_key_created_at ON idempotency_key (created_at);

CREATE TABLE IF NOT EXISTS outbox_event (
    seq          bigserial   PRIMARY KEY,
    id           uuid        NOT NULL UNIQUE,
    event_type   text        NOT NULL,
    routing_key  text        NOT NULL,
    envelope     jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_event_pending ON outbox_event (seq) WHERE published_at IS NULL;

CREATE TABLE IF NOT EXISTS inbox_event (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    event_type   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Claim an idempotency key inside the caller's transaction.
-- Returns NULL when the key is new (go ahead, then idempotency_store), or the answer to give:
-- {"status", "body", "replayed": true} for a replay, or a 409 problem for a reused key.
-- A concurrent first request holding the same key makes the INSERT wait until it commits, so two
-- requests with one key on two instances produce one effect.
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
    RETURN jsonb_build_object('status', prior.status_code, 'body', prior.response, 'replayed', true);
END $$;

CREATE OR REPLACE FUNCTION idempotency_store(p_scope text, p_key text, p_status integer, p_body jsonb)
RETURNS jsonb LANGUAGE sql AS $$
    UPDATE idempotency_key SET status_code = p_status, response = p_body
     WHERE scope = p_scope AND key = p_key;
    SELECT jsonb_build_object('status', p_status, 'body', p_body, 'replayed', false);
$$;

-- Forget a claim: used when a request is refused as invalid, so that nothing is left behind.
CREATE OR REPLACE FUNCTION idempotency_release(p_scope text, p_key text)
RETURNS void LANGUAGE sql AS $$
    DELETE FROM idempotency_key WHERE scope = p_scope AND key = p_key AND status_code IS NULL;
$$;

CREATE OR REPLACE FUNCTION problem(p_status integer, p_type text, p_detail text)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'status', p_status,
        'problem', true,
        'body', jsonb_build_object('type', p_type, 'status', p_status, 'detail', p_detail,
                                   'title', CASE p_status WHEN 402 THEN 'Payment required'
                                                          WHEN 403 THEN 'Forbidden'
                                                          WHEN 404 THEN 'Not found'
                                                          WHEN 409 THEN 'Conflict'
                                                          WHEN 422 THEN 'Unprocessable content'
                                                          ELSE 'Error' END),
        'replayed', false);
$$;

-- Write one event into the outbox, in the caller's transaction. The envelope carries everything a
-- consumer needs; its id is the AMQP message_id and the consumers' inbox key.
CREATE OR REPLACE FUNCTION outbox_add(p_type text, p_source text, p_data jsonb, p_version integer DEFAULT 1)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid := gen_random_uuid();
BEGIN
    INSERT INTO outbox_event (id, event_type, routing_key, envelope)
    VALUES (v_id, p_type, p_type, jsonb_build_object(
        'id', v_id,
        'type', p_type,
        'version', p_version,
        'source', p_source,
        'occurred_at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'data', p_data));
    RETURN v_id;
END $$;

-- Round half to even to an integer (PostgreSQL's round() on numeric rounds half away from zero).
CREATE OR REPLACE FUNCTION round_half_even(x numeric)
RETURNS numeric LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    f numeric := floor(x);
    d numeric := x - f;
BEGIN
    IF d > 0.5 THEN RETURN f + 1; END IF;
    IF d < 0.5 THEN RETURN f; END IF;
    IF mod(f, 2) = 0 THEN RETURN f; END IF;
    RETURN f + 1;
END $$;

CREATE OR REPLACE FUNCTION rfc3339(t timestamptz)
RETURNS text LANGUAGE sql STABLE STRICT AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
$$;
