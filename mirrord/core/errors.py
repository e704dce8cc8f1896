"""The one root of mirrord's error tree: everything mirrord raises on purpose is a MirrordError.

MirrordError
├── mirrord.oci.errors.OCIError             the pure model refused its input (also a ValueError)
├── mirrord.registry.errors.RegistryError   talking to a registry or layout failed (``retry_after``
│                                           is the server's hint, when it sent one)
├── mirrord.copy.errors.CopyError           an image could not be copied
└── mirrord.plan.PlanError                  the sync plan is invalid

Anything else that escapes is a programming error: where it is turned into a per-image message, it
is logged with its traceback first (:func:`mirrord.copy.errors.log_unexpected`).
"""


class MirrordError(Exception):
    """Base of every error mirrord raises on purpose."""
