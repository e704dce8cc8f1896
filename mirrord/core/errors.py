"""The root of mirrord's own error tree (the pure model's errors are ``mirrord.oci.OCIError``).

MirrordError
├── mirrord.registry.errors.RegistryError   talking to a registry or layout failed
├── mirrord.copy.errors.CopyError           an image could not be copied
└── mirrord.plan.PlanError                  the sync plan is invalid
"""


class MirrordError(Exception):
    """Base of every error mirrord raises on purpose."""
