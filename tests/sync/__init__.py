"""Fast, in-memory tests of the sync pass runner."""
