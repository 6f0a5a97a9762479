-- Helpers called from PL/pgSQL become PL/pgSQL themselves. PostgreSQL inlines a SQL function only
-- when its body is one plain SELECT no more volatile than the function; otherwise (several
-- statements, a write, or problem: IMMUTABLE, but jsonb_build_object is only STABLE) every
-- transaction parses, analyses and plans the body again. idempotency_store did that in every
-- payment and refund: 17 % of a backend's CPU in a profile of make_payment (perf, one client),
-- ~11 % of the bank's backends under 1000 users' load. problem (every refusal and replay) and
-- idempotency_release (every refused request) did too. A PL/pgSQL function keeps its plans for
-- the session.
CREATE OR REPLACE FUNCTION idempotency_store(p_scope text, p_key text, p_status integer, p_body jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    UPDATE idempotency_key SET status_code = p_status, response = p_body
     WHERE scope = p_scope AND key = p_key;
    RETURN jsonb_build_object('status', p_status, 'body', p_body, 'replayed', false);
END $$;

CREATE OR REPLACE FUNCTION idempotency_release(p_scope text, p_key text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM idempotency_key WHERE scope = p_scope AND key = p_key AND status_code IS NULL;
END $$;

CREATE OR REPLACE FUNCTION problem(p_status integer, p_type text, p_detail text)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN jsonb_build_object(
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
END $$;
