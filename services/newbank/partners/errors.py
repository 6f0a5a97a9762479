"""The partners service's problems."""

from newbank.errors import ProblemError


def partner_not_found() -> ProblemError:
    return ProblemError(404, "partner-not-found", "no partner store with this merchant id")


def invalid_cursor() -> ProblemError:
    return ProblemError(400, "invalid-cursor", "the cursor is not one this API gave out")


def not_your_store() -> ProblemError:
    return ProblemError(403, "forbidden", "a merchant may only change its own offer")
