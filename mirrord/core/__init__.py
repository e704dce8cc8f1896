"""The bottom layer, imported by every other: the one exception root (``errors``), the event types
and the bus that carries them to subscribers (``events``), and atomic file writes (``files``).
Imports nothing else of mirrord."""
