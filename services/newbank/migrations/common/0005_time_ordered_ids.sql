-- Ids of new rows in time order (the UUIDv7 layout: 48 bits of Unix milliseconds, then random bits).
--
-- Random (v4) ids send each insert into a random page of every index keyed by them (payment,
-- journal entry, posting → journal entry, outbox event, and the consumers' inbox, whose keys are
-- outbox ids). After each checkpoint the first change to a page is logged as a whole 8 kB page: at
-- ~290 payments/s those indexes wrote 18.2k full-page images in 20 s, about a third of all WAL, which
-- the synchronous standby must also receive and replay. Time-ordered ids append to the right edge.
-- They stay unguessable (74 random bits) and only say when the row was made.

CREATE OR REPLACE FUNCTION uuid_time_ordered() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),  -- version 4 → 7
        'hex')::uuid
$$;

-- Redefine functions so that the ids they make are time-ordered: their text, with each
-- gen_random_uuid() call replaced. Used here and by the database-specific migrations.
CREATE OR REPLACE FUNCTION use_time_ordered_ids(p_functions text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
              WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY (p_functions) LOOP
        EXECUTE replace(pg_get_functiondef(f), 'gen_random_uuid()', 'uuid_time_ordered()');
    END LOOP;
END $$;

SELECT use_time_ordered_ids(ARRAY['outbox_add']);
