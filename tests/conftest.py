"""Shared fixtures: real registries in four modes, fresh registries on demand, unique repo names.

- ``plain_registry``, ``basic_registry``, ``token_registry``, ``tls_registry``: one server per mode for
  the whole session (tests share them, so they must use ``unique_repo`` names);
- ``any_registry``: parametrised over the four modes (ids plain/basic/token/tls);
- ``registry_factory(mode, **kw)``: a fresh server for this test only (e.g. to count token requests
  from zero or to start with empty storage);
- ``unique_repo``: ``t/<test-name-slug>-<n>``, unique within the session.

Integration tests mark themselves ``@pytest.mark.integration``; list the external tools they need with
``@pytest.mark.tools("skopeo", ...)``. A missing tool FAILS the test when ``CI`` is set and skips it
with a reason otherwise (the registry fixtures check ``docker-registry`` themselves).
"""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

# The repository root on sys.path lets tests import ``mirrord`` and ``tests.testbed`` without an
# installed package (pytest puts only test directories there).
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.testbed.registry import MODES, RegistryServer, start_registry  # noqa: E402
from tests.testbed.tools import require_tool  # noqa: E402

RegistryFactory = Callable[..., RegistryServer]


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``tools`` marker (pytest runs with unknown-marker warnings as errors)."""
    config.addinivalue_line(
        "markers", "tools(*names): external tools an integration test needs (fail in CI, skip otherwise)"
    )


@pytest.fixture(autouse=True)
def _require_marked_tools(request: pytest.FixtureRequest) -> None:
    """Integration tests: check the tools named by their ``tools`` markers before the test runs."""
    if request.node.get_closest_marker("integration") is None:
        return
    for marker in request.node.iter_markers("tools"):
        for name in marker.args:
            require_tool(name)


def _session_registry(mode: str, factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with start_registry(mode, factory.mktemp(f"registry-{mode}")) as server:
        yield server


@pytest.fixture(scope="session")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A plain-HTTP, anonymous registry shared by the session."""
    yield from _session_registry("plain", tmp_path_factory)


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A plain-HTTP registry with Basic auth (``username``/``password`` on the server object)."""
    yield from _session_registry("basic", tmp_path_factory)


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A plain-HTTP registry with bearer-token auth; ``token_requests`` counts issued tokens."""
    yield from _session_registry("token", tmp_path_factory)


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """An anonymous HTTPS registry; ``ca_file`` is the CA that signed its certificate."""
    yield from _session_registry("tls", tmp_path_factory)


@pytest.fixture(params=MODES)
def any_registry(request: pytest.FixtureRequest) -> RegistryServer:
    """Each of the four session registries in turn (ids plain/basic/token/tls)."""
    server: RegistryServer = request.getfixturevalue(f"{request.param}_registry")
    return server


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[RegistryFactory]:
    """``registry_factory(mode, **kw)`` starts a fresh registry that stops when the test ends.

    Keyword arguments go to :func:`start_registry` (e.g. ``token_expires_in=2``).
    """
    counter = itertools.count()
    with ExitStack() as stack:

        def factory(mode: str, **kwargs: Any) -> RegistryServer:
            tmp = tmp_path / f"registry-{mode}-{next(counter)}"
            return stack.enter_context(start_registry(mode, tmp, **kwargs))

        yield factory


_repo_counter = itertools.count(1)


def repo_slug(test_name: str, limit: int = 40) -> str:
    """A test name as a valid repository path component: lowercase alphanumerics joined by ``-``."""
    words = re.findall(r"[a-z0-9]+", test_name.lower())
    slug = "-".join(words)[:limit].strip("-")
    return slug or "test"


@pytest.fixture
def unique_repo(request: pytest.FixtureRequest) -> str:
    """A repository name no other test of this session uses: ``t/<test-name-slug>-<n>``."""
    return f"t/{repo_slug(request.node.name)}-{next(_repo_counter)}"
