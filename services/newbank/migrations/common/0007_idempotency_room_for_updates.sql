-- Leave room in each page of idempotency_key for the update every key's row gets: its stored answer.
--
-- A money request claims its key (an INSERT) and stores its answer (an UPDATE of the same row) in one
-- transaction. The old version is dead only at the commit, so the new one needs room in the same page
-- at once. With the default fillfactor (100) the page the INSERT had just filled often had none: the
-- new version went to another page, with a new entry in both indexes, one of them on the random key.
-- Under load 58-90 % of those updates were HOT; with ten per cent of each page kept free, 99.9-100 %
-- (eighteenth session, `loadtest/README.md`).
--
-- Only pages written from now on keep that room. The lock is SHARE UPDATE EXCLUSIVE: requests go on.

ALTER TABLE idempotency_key SET (fillfactor = 90);
