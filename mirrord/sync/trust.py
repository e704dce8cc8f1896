"""The plan's trust settings made usable: the policy gate and one signer per signing key.

:func:`open_trust` reads the policy file and decrypts each ``sign:`` key once (scrypt costs ~0.1 s
per key), so a bad policy, an unreadable key or a wrong passphrase stops ``sync`` and the daemon at
start (exit 2) instead of failing every image: a :class:`PlanError` naming the plan line and key and
the policy file's own key path, never a secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mirrord.plan import Plan, PlanError, SignConfig, TargetConfig
from mirrord.trust import TrustError

if TYPE_CHECKING:
    # Imported where used: a plan without a policy or signing keys (most) never loads the policy
    # code, cosign or cryptography's curves (~50 ms of every `mirrord sync`'s start-up).
    from cryptography.hazmat.primitives.asymmetric import ec

    from mirrord.trust.gate import PolicyGate
    from mirrord.trust.signer import CosignSigner


@dataclass(slots=True)
class Trust:
    """The gate (None: no policy, everything is admitted) and the signers by key settings."""

    gate: PolicyGate | None = None
    signers: dict[SignConfig, CosignSigner] = field(default_factory=dict)

    def signer(self, target: TargetConfig) -> CosignSigner | None:
        """The signer of ``target`` (None when it does not sign)."""
        return self.signers.get(target.sign) if target.sign is not None else None

    @property
    def notes(self) -> tuple[str, ...]:
        """What the policy ignores or cannot check (transports, requirement types)."""
        return self.gate.policy.notes if self.gate is not None else ()


def open_trust(plan: Plan) -> Trust:
    """Load ``plan.policy`` and every target's signing key; PlanError saying what is wrong."""
    trust = Trust()
    if plan.policy is not None:
        from mirrord.trust.gate import PolicyGate
        from mirrord.trust.policy import load_policy

        try:
            trust.gate = PolicyGate(load_policy(plan.policy))
        except TrustError as exc:
            raise PlanError(plan.path, plan.origins.get("policy"), "policy", str(exc)) from None
    for entry in plan.entries:
        for target in entry.targets:
            if target.sign is not None and target.sign not in trust.signers:
                from mirrord.trust.signer import CosignSigner

                trust.signers[target.sign] = CosignSigner(_signing_key(plan, target.sign))
    return trust


def _signing_key(plan: Plan, sign: SignConfig) -> ec.EllipticCurvePrivateKey:
    from mirrord.trust.keys import decrypt_private_key, read_passphrase

    try:
        data = Path(sign.key_file).read_bytes()
    except OSError as exc:
        message = f"cannot read {sign.key_file}: {exc.strerror or exc}"
        raise PlanError(plan.path, sign.line, f"{sign.key}.key_file", message) from None
    try:
        passphrase = read_passphrase(file=sign.passphrase_file, env=sign.passphrase_env)
        return decrypt_private_key(data, passphrase, source=sign.key_file)
    except TrustError as exc:
        raise PlanError(plan.path, sign.line, sign.key, str(exc)) from None
