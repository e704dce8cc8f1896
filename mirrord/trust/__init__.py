"""Trust: the signature policy checked before an image is copied, and the signatures a mirror adds.

- :mod:`mirrord.trust.policy`: containers-policy.json(5) (``default``, ``transports.docker`` scopes,
  ``insecureAcceptAnything`` / ``reject`` / ``sigstoreSigned`` with every ``signedIdentity`` form);
- :mod:`mirrord.trust.cosign`: cosign's simple-signing payloads and ``sha256-<hex>.sig`` manifests;
- :mod:`mirrord.trust.keys`: cosign's encrypted private keys (scrypt + nacl/secretbox), public keys;
- :mod:`mirrord.trust.gate` and :mod:`mirrord.trust.signer`: the two hooks the copy engine calls
  (admit an image after its root manifest is read; sign a root pushed to a target).

Imports registry, oci and core only; the engine sees these through the protocols in
:mod:`mirrord.copy.hooks`.
"""

from mirrord.trust.errors import TrustError

__all__ = ["TrustError"]
