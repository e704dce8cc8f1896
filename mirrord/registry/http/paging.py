"""Paged name lists of the distribution API: a repository's tags, and the registry's catalog.

``GET <path>?n=N`` answers ``{"<key>": [...]}`` and, when there is more, ``Link: <next>; rel="next"``.
Registries bend this (see "Quirks seen in the field" in the protocol notes), so :func:`list_names`:

- follows ``Link`` (relative or absolute), whatever page size the registry chose (a capped ``n``);
- asks again with ``last=<last name>`` when a full page came without ``Link`` (registries that page
  by ``last`` only), and stops when a page brings no name not seen before (one ignoring ``last``);
- reads ``"tags": null`` (Nexus) and a missing key as an empty page;
- asks again without ``n`` when the registry rejects the ``n`` we asked for (400; ECR caps it);
- bounds the pages read, and the bytes of each.

``NotFound`` goes to the caller: for a tag list it means the repository does not exist.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from urllib.parse import quote

from mirrord.registry.errors import ProtocolError, RequestRejected
from mirrord.registry.http.session import HTTPSession

#: The page size we ask for (ECR refuses more than 1000).
PAGE_SIZE = 1000
#: Lists are read whole; this bounds one page (a million names of ~30 bytes).
MAX_PAGE_BYTES = 32 * 1024 * 1024
MAX_PAGES = 10_000
_LINK_RE = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]*)*)")


def parse_link_next(values: Iterable[str]) -> str | None:
    """The target of the ``rel="next"`` link among ``Link`` header values, if any."""
    for value in values:
        for match in _LINK_RE.finditer(value):
            for param in match.group(2).split(";"):
                name, _, rel = param.partition("=")
                if name.strip().lower() == "rel" and "next" in rel.strip().strip('"').lower().split():
                    return match.group(1)
    return None


def page_names(body: bytes, key: str, where: str, *, label: str | None = None) -> list[str]:
    """The names under ``key`` of one page; ``null`` or a missing key is an empty page, anything
    else but a list (or a body that is not a JSON object) a ProtocolError naming ``label`` (what
    the list is called in messages; ``<key> list`` by default)."""
    what = label or f"{key} list"
    try:
        data = json.loads(body)
    except ValueError:
        raise ProtocolError(f"{where}: {what} is not JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{where}: {what} is not a JSON object")
    found = data.get(key)
    if found is None:
        return []
    if not isinstance(found, list):
        raise ProtocolError(f"{where}: '{key}' is not a list")
    return [name for name in found if isinstance(name, str) and name]


async def list_names(
    client: HTTPSession,
    path: str,
    key: str,
    *,
    scopes: Sequence[str],
    repository: str | None = None,
    page_size: int = PAGE_SIZE,
    max_pages: int = MAX_PAGES,
    label: str | None = None,
    complete: bool = False,
) -> list[str]:
    """Every name of the paged list at ``path`` (``/v2/<name>/tags/list``, ``/v2/_catalog``) under
    ``key`` (``tags``, ``repositories``), in the registry's order, each once. ``label`` names the
    list in errors (see :func:`page_names`). With ``complete``, a list cut short by ``max_pages`` or
    by a ``Link`` back to a page already read raises ProtocolError instead of coming back partial
    (a source's tags, which prune works from)."""
    names: list[str] = []
    seen: set[str] = set()
    asked: int | None = page_size
    target: str | None = f"{path}?n={page_size}"
    targets: set[str] = set()
    where = f"{client.host}/{repository}" if repository else client.host
    while target is not None and target not in targets and len(targets) < max_pages:
        targets.add(target)
        try:
            fetched = await client.fetch(
                "GET", target, scopes=scopes, limit=MAX_PAGE_BYTES, repository=repository
            )
        except RequestRejected:
            if len(targets) > 1 or asked is None:
                raise
            asked, target = None, path  # the registry would not page by our n: let it choose
            continue
        page = page_names(fetched.body, key, where, label=label)
        fresh = [name for name in page if name not in seen]
        names.extend(fresh)
        seen.update(fresh)
        target = parse_link_next(fetched.links)
        if target is None and fresh and asked is not None and len(page) >= asked:
            target = f"{path}?n={asked}&last={quote(page[-1], safe='')}"
        elif not fresh:
            target = None  # a page with nothing new: a registry ignoring last, or the end
    if complete and target is not None:
        raise ProtocolError(f"{where}: {key} list longer than {max_pages} pages or looping; read incomplete")
    return names
