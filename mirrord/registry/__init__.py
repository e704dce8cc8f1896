"""Storage behind one contract: the :class:`~mirrord.registry.base.Repository` protocol (``base``),
registry settings (``settings``), registry errors (``errors``) and the hub that opens repositories
by reference or ``oci:`` text (``hub``; the sync runner sees it as a ``RepositoryOpener``).
Implementations: the distribution HTTP API (``http/``) and OCI image layouts (``layout/``).
Never imports copy, plan, sync, daemon, observe or trust.
"""
