"""The accounts service: customers, accounts, deposits, FX rates, merchants, key introspection."""
