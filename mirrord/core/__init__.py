"""The bottom layer: the one exception root and the event bus. Imports nothing else of mirrord."""
