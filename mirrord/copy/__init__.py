"""The copy engine: plan (pure: what to copy, in which order) and execute (bounded, deduplicated,
verified); emits :mod:`mirrord.core.events`. Depends only on the Repository protocol and the OCI model.
"""

from mirrord.copy.engine import CopyEngine, CopyRequest, CopyResult, Target
from mirrord.copy.errors import BlobCopyFailed, CopyError, ManifestTooDeep, NoMatchingPlatform
from mirrord.copy.limits import Limits
from mirrord.copy.locations import LocationCache
from mirrord.copy.request import DroppedSignature

__all__ = [
    "BlobCopyFailed",
    "CopyEngine",
    "CopyError",
    "CopyRequest",
    "CopyResult",
    "DroppedSignature",
    "Limits",
    "LocationCache",
    "ManifestTooDeep",
    "NoMatchingPlatform",
    "Target",
]
