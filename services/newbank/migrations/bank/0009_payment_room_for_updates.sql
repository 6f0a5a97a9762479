-- Leave room in each page of payment for the update every payment row gets later: its cashback outcome.
--
-- The outcome arrives seconds after the payment, when later payments have filled the row's page. With
-- the default fillfactor (100) its new version often found no room there, went to another page, and took
-- a new entry in each of the payment's four indexes (a non-HOT update). Ten per cent of each page kept free
-- holds the new versions, and page pruning reclaims the old ones. Under load (eighteenth session,
-- `loadtest/README.md`) 35-62 % of those updates were HOT before, 70-89 % after: the consumer applies
-- outcomes in batches, one transaction each, and a batch's old versions are dead only at its commit.
--
-- Only pages written from now on keep that room. The lock is
-- SHARE UPDATE EXCLUSIVE: payments go on while it is taken.

ALTER TABLE payment SET (fillfactor = 90);
