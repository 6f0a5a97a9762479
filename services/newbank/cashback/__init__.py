"""Cashback service: cashback credited once per payment, reversed on refunds, redeemable."""
