"""The load tools' tests; ``tests/conftest.py`` makes ``loadtest/`` (top of the repository) importable."""
