"""The distribution HTTP API: transport, auth, credentials, the retry policy, the client and the
:class:`~mirrord.registry.base.Repository` over HTTP with its blob downloads and uploads."""
