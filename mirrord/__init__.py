"""mirrord: an asynchronous container registry mirroring daemon."""

__version__ = "0.1.0"
