"""A registry's repository list: ``GET /v2/_catalog?n=&last=``, every page, ``Link`` followed.

The catalog is optional in the distribution API and many public registries switch it off (401, 403
or 404); :func:`list_catalog` then raises :class:`CatalogUnavailable` with a message that says so,
rather than returning an empty list that would look like an empty namespace.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from mirrord.registry.errors import AuthError, NotFound, ProtocolError, RegistryError
from mirrord.registry.http.repository import parse_link_next
from mirrord.registry.http.session import HTTPSession

#: distribution's own page size (and its maximum); larger values are capped by most registries.
CATALOG_PAGE_SIZE = 100
#: One page of up to a few thousand names is small; this bounds a misbehaving registry.
MAX_CATALOG_PAGE_BYTES = 8 * 1024 * 1024
#: A million repositories at distribution's page size; a loop guard, not a product limit.
MAX_CATALOG_PAGES = 10_000
CATALOG_SCOPE = "registry:catalog:*"


class CatalogUnavailable(RegistryError):
    """The registry does not serve ``/v2/_catalog`` to us (401, 403 or 404)."""


async def list_catalog(client: HTTPSession, *, page_size: int = CATALOG_PAGE_SIZE) -> list[str]:
    """Every repository path the registry lists, in the registry's order, without duplicates.

    Pages are requested with ``n=page_size`` and followed through ``Link: <...>; rel="next"``; a
    registry that sends no Link but a full page is asked again with ``last=`` (the spec allows
    either). Raises CatalogUnavailable for 401/403/404 and ProtocolError for a body that is not a
    catalog; other RegistryErrors (after the client's retries) pass through.
    """
    names: dict[str, None] = {}
    target: str | None = f"/v2/_catalog?n={page_size}"
    seen: set[str] = set()
    while target is not None and target not in seen and len(seen) < MAX_CATALOG_PAGES:
        seen.add(target)
        page, link = await _page(client, target)
        names.update(dict.fromkeys(page))
        target = link
        if target is None and len(page) >= page_size:
            target = f"/v2/_catalog?n={page_size}&last={quote(page[-1], safe='/')}"
    return list(names)


async def _page(client: HTTPSession, target: str) -> tuple[list[str], str | None]:
    try:
        fetched = await client.fetch("GET", target, scopes=(CATALOG_SCOPE,), limit=MAX_CATALOG_PAGE_BYTES)
    except (AuthError, NotFound) as exc:
        raise CatalogUnavailable(
            f"{client.host} does not list its repositories (GET /v2/_catalog answered HTTP {exc.status}); "
            "a pattern source needs the catalog: name the repositories as entries instead",
            registry=client.host,
            status=exc.status,
        ) from exc
    return _names(client.host, fetched.body), parse_link_next(fetched.links)


def _names(host: str, body: bytes) -> list[str]:
    try:
        data = json.loads(body)
    except ValueError:
        raise ProtocolError(f"{host}: catalog is not JSON", registry=host) from None
    found = data.get("repositories") if isinstance(data, dict) else None
    if found is None:
        return []
    if not isinstance(found, list):
        raise ProtocolError(f"{host}: catalog 'repositories' is not a list", registry=host)
    return [name for name in found if isinstance(name, str) and name]
