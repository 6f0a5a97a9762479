"""kopf handlers: importing this package registers them (thin: they call into plain functions)."""

from newbank_operator.handlers import (  # noqa: F401 - imported for kopf's registration
    handle_create_platform,
    handle_login,
    handle_platform_daemon,
    handle_startup,
)
