"""NewBank's operator: scaling and RabbitMQ queue recovery, for kopf and for the local runtime."""
