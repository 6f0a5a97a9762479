"""The cashback service's problems."""

from newbank.errors import ProblemError


def account_not_found() -> ProblemError:
    # Also what a customer gets for someone else's account: existence is not revealed.
    return ProblemError(404, "cashback-account-not-found", "no cashback account with this id for this key")


def redemption_not_found() -> ProblemError:
    return ProblemError(404, "redemption-not-found", "no redemption with this id for this key")


def invalid_cursor() -> ProblemError:
    return ProblemError(400, "invalid-cursor", "the cursor is not one this API gave out")
