-- The inbox is pruned by age (newbank.messaging.inbox_pruning): without this index every pruning
-- round would scan the whole table, which grows by one row per event and consumer.
CREATE INDEX IF NOT EXISTS inbox_event_processed_at ON inbox_event (processed_at);
