"""The long-lived service: scheduler, HTTP endpoints, systemd notifications and SIGHUP reloads."""
