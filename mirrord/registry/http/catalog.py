"""A registry's repository list: ``GET /v2/_catalog``, read through the one paged-list reader.

Paging (``Link``, ``last=``, a capped or refused ``n``, bounded pages) is
:func:`mirrord.registry.http.paging.list_names`'s; this module adds what is the catalog's own: its
scope, its page size, and its absence. The catalog is optional in the distribution API and many
public registries switch it off (401, 403 or 404); :func:`list_catalog` then raises
:class:`CatalogUnavailable` with a message that says so, rather than returning an empty list that
would look like an empty namespace.
"""

from __future__ import annotations

from mirrord.registry.errors import AuthError, NotFound, RegistryError
from mirrord.registry.http.paging import list_names
from mirrord.registry.http.session import HTTPSession

#: distribution's own page size (and its maximum); larger values are capped by most registries.
CATALOG_PAGE_SIZE = 100
CATALOG_SCOPE = "registry:catalog:*"


class CatalogUnavailable(RegistryError):
    """The registry does not serve ``/v2/_catalog`` to us (401, 403 or 404)."""


async def list_catalog(client: HTTPSession, *, page_size: int = CATALOG_PAGE_SIZE) -> list[str]:
    """Every repository path the registry lists, in the registry's order, without duplicates.

    Pages are read by :func:`~mirrord.registry.http.paging.list_names` (``n=page_size``, ``Link``
    or ``last=``, ``n`` dropped when refused). Raises CatalogUnavailable for 401/403/404 and
    ProtocolError for a body that is not a catalog; other RegistryErrors (after the client's
    retries) pass through.
    """
    try:
        return await list_names(
            client,
            "/v2/_catalog",
            "repositories",
            scopes=(CATALOG_SCOPE,),
            page_size=page_size,
            label="catalog",
        )
    except (AuthError, NotFound) as exc:
        raise CatalogUnavailable(
            f"{client.host} does not list its repositories (GET /v2/_catalog answered HTTP {exc.status}); "
            "a pattern source needs the catalog: name the repositories as entries instead",
            registry=client.host,
            status=exc.status,
        ) from exc
