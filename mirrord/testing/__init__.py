"""Test doubles: the in-memory registry and deterministic sample images.

Used by the tests, the benchmark and ``make demo``; excluded from the wheel (see pyproject.toml),
so nothing in production may import it.
"""
