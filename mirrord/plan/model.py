"""The validated, frozen sync plan: what the loader returns and the rest of mirrord reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from mirrord.core.errors import MirrordError
from mirrord.oci import Digest, Platform
from mirrord.oci.convert import Compression, Format
from mirrord.plan.patterns import RepositoryFilter, RepositoryPattern, source_pattern
from mirrord.plan.tags import TagFilter
from mirrord.registry.settings import RegistrySettings

#: The daemon schedule when neither the entry nor ``defaults`` sets ``interval``.
DEFAULT_INTERVAL = 6 * 3600.0
#: How many tags one entry may prune per pass when ``prune_max`` is not set.
DEFAULT_PRUNE_MAX = 10
DEFAULT_PORT = 9402


class PlanError(MirrordError):
    """The sync plan is invalid. ``str(e)`` is ``FILE:LINE: KEY: message``.

    ``line`` is 1-based and None when unknown; ``key`` is the dotted key path (``sync[2].tags.semver``)
    and empty when the problem is not under a key (a YAML syntax error). Messages never quote secrets.
    """

    def __init__(self, path: str, line: int | None, key: str, message: str) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.message = message
        super().__init__(self.__str__())

    def __str__(self) -> str:
        """``FILE:LINE: KEY: message``, leaving out the parts that are unknown."""
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"

    def __reduce__(self) -> tuple[type[PlanError], tuple[str, int | None, str, str]]:
        """Picklable with its fields (the default would pass only the formatted string)."""
        return (PlanError, (self.path, self.line, self.key, self.message))


@dataclass(frozen=True, slots=True)
class SignConfig:
    """A target's ``sign:``: a cosign encrypted private key and where its passphrase is (a file,
    whose trailing newline is dropped, or an environment variable; neither: an empty passphrase).
    ``key`` and ``line`` say where the plan wrote it (for messages)."""

    key_file: str
    passphrase_file: str | None = None
    passphrase_env: str | None = None
    key: str = field(default="", compare=False)
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """Where an entry's images go.

    ``ref`` is ``registry/repository`` (normalised, no tag) or ``oci:PATH``; ``tag`` is a fixed target
    tag when the target names one (only allowed when the source names one tag or digest); otherwise
    images keep their source tags. ``artifact_types`` (None: all) limits which artifacts are copied
    (by ``artifactType``, else a non-image config type, else the first layer's type). ``sign``
    signs every root pushed here (registry targets only).
    """

    ref: str
    tag: str | None = None
    format: Format = "keep"
    compression: Compression = "keep"
    artifacts: bool = True
    artifact_types: tuple[str, ...] | None = None
    sign: SignConfig | None = None

    @property
    def is_layout(self) -> bool:
        """True for an OCI image layout directory target (``oci:PATH``)."""
        return self.ref.startswith("oci:")


@dataclass(frozen=True, slots=True)
class Entry:
    """One ``sync:`` item with the defaults merged in.

    ``source`` is the normalised repository (``docker.io/library/nginx``) or ``oci:PATH``;
    ``source_is_short`` says the user wrote a short name, which the sync pass resolves through
    ``search_registries`` when any are set. ``tag``/``digest`` come from ``src:tag``/``src@digest``;
    then ``tags`` is None. ``tags`` None with neither means every tag. ``platforms`` None means all.
    ``interval`` is in seconds. ``recheck_artifacts`` looks for new artifacts of unchanged images
    every pass (source GETs); otherwise an unchanged image costs one HEAD per side.
    A ``source`` with ``*``/``**`` segments is a pattern (:attr:`pattern`): its targets end in ``/**``
    and ``repositories`` (None: all) narrows the catalog's matches.
    """

    name: str
    source: str
    source_is_short: bool = False
    tag: str | None = None
    digest: Digest | None = None
    tags: TagFilter | None = None
    targets: tuple[TargetConfig, ...] = ()
    platforms: tuple[Platform, ...] | None = None
    interval: float = DEFAULT_INTERVAL
    prune: bool = False
    prune_max: int = DEFAULT_PRUNE_MAX
    search_registries: tuple[str, ...] = ()
    require_signatures: bool = False
    recheck_artifacts: bool = False
    repositories: RepositoryFilter | None = None

    @property
    def short_name(self) -> str:
        """The repository as a short name (``nginx`` for ``docker.io/library/nginx``): what each
        of ``search_registries`` is asked for when ``source_is_short``."""
        short = self.source.split("/", 1)[1] if "/" in self.source else self.source
        return short.removeprefix("library/")

    @property
    def pattern(self) -> RepositoryPattern | None:
        """The parsed repository pattern when the source is one, else None."""
        return source_pattern(self.source)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The daemon's HTTP listener; ``trigger_token_file`` holds the bearer token ``POST /sync`` needs."""

    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    trigger_token_file: str | None = None

    @property
    def listen(self) -> str:
        """``host:port`` as written in the plan (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _frozen(mapping: Mapping[str, RegistrySettings]) -> Mapping[str, RegistrySettings]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class Plan:
    """A whole validated plan.

    ``registries`` maps a normalised host (``docker.io``, ``127.0.0.1:5000``) to its settings; hosts not
    listed get :func:`mirrord.registry.settings.default_settings`. ``origins`` maps key paths of file
    and secret settings to plan lines, so later checks (:func:`mirrord.plan.check_secrets`) can name the
    line; it takes no part in equality. ``policy`` is the signature policy file
    (containers-policy.json(5)) every image is checked against before it is copied; None admits all.
    """

    path: str
    registries: Mapping[str, RegistrySettings] = field(default_factory=dict)
    entries: tuple[Entry, ...] = ()
    server: ServerConfig = field(default_factory=ServerConfig)
    policy: str | None = None
    origins: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "registries", _frozen(self.registries))
        object.__setattr__(self, "origins", MappingProxyType(dict(self.origins)))

    def entry(self, name: str) -> Entry:
        """The entry called ``name``; KeyError when there is none."""
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise KeyError(name)
