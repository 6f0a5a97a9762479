"""NewBank Cashback: the services, their shared pieces, the local runtime and the CLI."""

__version__ = "0.1.0"
