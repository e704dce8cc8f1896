"""Test doubles: the in-memory registry (``memory``), an in-memory repository opener for the sync
runner (``hub``) and deterministic sample images (``sample``).

Used by the tests, the benchmark and ``make demo``; excluded from the wheel (see pyproject.toml),
so nothing in production may import it (``tests/test_architecture.py`` checks both).
"""
