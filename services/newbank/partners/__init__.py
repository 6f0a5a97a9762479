"""Partners service: partner stores and their versioned cashback offers, read through a cache."""
