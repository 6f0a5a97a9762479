"""The transaction service: payments and refunds, one database round trip each."""
