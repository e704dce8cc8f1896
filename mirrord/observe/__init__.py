"""What an operator sees: Prometheus metrics, log lines and progress bars, all subscribers to
:mod:`mirrord.core.events`. Nothing below this layer imports it."""
