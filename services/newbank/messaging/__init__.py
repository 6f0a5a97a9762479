"""RabbitMQ: topology, event envelope, transactional outbox relay and idempotent consumers."""
