"""The long-lived service (``mirrord run``): the composition root and reloads (``service``), when
each entry runs (``scheduler``), the HTTP endpoints (``web``: ``/status``, ``/metrics``, ``/sync``,
health) and systemd readiness and watchdog (``systemd``). Uses sync, plan and observe; only the CLI
imports it."""
