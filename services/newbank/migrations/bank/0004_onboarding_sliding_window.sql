-- The onboarding limit as a sliding window: a fixed per-minute window let a client send twice the
-- limit around a minute boundary (found by the ingress test). The count of the previous minute is
-- weighted by how much of it still lies inside the last 60 seconds.
CREATE OR REPLACE FUNCTION onboarding_attempt_count(p_client text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_window   timestamptz := date_trunc('minute', now());
    v_current  integer;
    v_previous integer;
    v_elapsed  numeric := extract(epoch FROM now() - date_trunc('minute', now())) / 60;
BEGIN
    INSERT INTO onboarding_attempt AS o (client_address, window_start, attempts)
    VALUES (p_client, v_window, 1)
    ON CONFLICT (client_address, window_start) DO UPDATE SET attempts = o.attempts + 1
    RETURNING attempts INTO v_current;
    IF v_current = 1 THEN
        DELETE FROM onboarding_attempt WHERE window_start < now() - interval '10 minutes';
    END IF;
    SELECT attempts INTO v_previous FROM onboarding_attempt
     WHERE client_address = p_client AND window_start = v_window - interval '1 minute';
    RETURN v_current + floor(coalesce(v_previous, 0) * (1 - v_elapsed))::integer;
END $$;
