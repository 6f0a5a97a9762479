-- The onboarding limit counts admitted onboardings only, and says truthfully when to come back.
--
-- 0004 counted every attempt, refused ones included, and answered Retry-After with the seconds left in
-- the current minute. At the next minute the previous minute's attempts still weigh on the sliding
-- window, so a client that came back then was refused again, and that refusal counted too: 16
-- concurrent clients that honoured Retry-After got 30 merchants in the first minute, then 15 every two
-- minutes, a quarter of the limit (found by the load test's setup with --merchants 240). Now a refusal
-- changes nothing, the check and the count happen under the address's row lock (several accounts
-- instances share the limit), and the answer is the number of seconds after which this address will
-- be admitted if nothing else is.

CREATE FUNCTION onboarding_admit(p_client text, p_limit integer, p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
-- Returns 0 when admitted (and counted), else the whole seconds to wait (at least 1).
DECLARE
    v_window   timestamptz := date_trunc('minute', p_now);
    v_elapsed  numeric := extract(epoch FROM p_now - date_trunc('minute', p_now));  -- seconds, [0, 60)
    v_current  integer;
    v_previous integer;
    v_wait     numeric;
BEGIN
    IF p_limit <= 0 THEN
        RETURN 60;  -- onboarding switched off: refuse, with a whole window to wait
    END IF;
    INSERT INTO onboarding_attempt (client_address, window_start, attempts) VALUES (p_client, v_window, 0)
    ON CONFLICT (client_address, window_start) DO NOTHING;
    IF FOUND THEN
        -- A new window for this address: a cheap moment to forget old windows.
        DELETE FROM onboarding_attempt WHERE window_start < p_now - interval '10 minutes';
    END IF;
    SELECT attempts INTO v_current FROM onboarding_attempt
     WHERE client_address = p_client AND window_start = v_window FOR UPDATE;
    SELECT attempts INTO v_previous FROM onboarding_attempt
     WHERE client_address = p_client AND window_start = v_window - interval '1 minute';
    v_previous := coalesce(v_previous, 0);
    -- The sliding window: the previous minute weighs by how much of it is still within the last 60 s.
    IF v_current + floor(v_previous * (60 - v_elapsed) / 60) < p_limit THEN
        UPDATE onboarding_attempt SET attempts = attempts + 1
         WHERE client_address = p_client AND window_start = v_window;
        RETURN 0;
    END IF;
    IF v_current >= p_limit THEN
        -- Not in this minute. In the next one this minute's count weighs c·(1 − e'), admitted once
        -- that is below the limit: e' > 1 − limit / c.
        v_wait := (60 - v_elapsed) + 60 * (1 - p_limit::numeric / v_current);
    ELSE
        -- Later in this minute, once v_previous·(1 − e) < limit − v_current.
        v_wait := 60 * (1 - (p_limit - v_current)::numeric / v_previous) - v_elapsed;
    END IF;
    -- The condition is strict: one second past the boundary, never on it.
    RETURN greatest(floor(v_wait)::integer + 1, 1);
END $$;

-- onboarding_attempt_count stays: during a rolling update the instances not yet replaced still call it.
