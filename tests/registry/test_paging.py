"""Paged name lists (:mod:`mirrord.registry.http.paging`) against scripted answers, no network."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from mirrord.registry.errors import NotFound, ProtocolError, RequestRejected
from mirrord.registry.http.client import Fetched, RegistryClient
from mirrord.registry.http.paging import list_names

PATH = "/v2/lib/app/tags/list"


class Scripted:
    """A stand-in client answering each target from a script; records what was asked."""

    host = "r.example"

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def fetch(self, method: str, target: str, **_: Any) -> Fetched:
        self.asked.append(target)
        answer = self.answers[target]
        if isinstance(answer, Exception):
            raise answer
        tags, link = answer if isinstance(answer, tuple) else (answer, None)
        links = (f'<{link}>; rel="next"',) if link else ()
        return Fetched(200, {}, json.dumps({"name": "lib/app", "tags": tags}).encode(), links)


async def names(client: Scripted, page_size: int = 2) -> list[str]:
    return await list_names(cast(RegistryClient, client), PATH, "tags", scopes=(), page_size=page_size)


async def test_link_pages_are_followed_whatever_size_the_registry_chose() -> None:
    client = Scripted({f"{PATH}?n=2": (["a"], f"{PATH}?n=1&last=a"), f"{PATH}?n=1&last=a": ["b"]})
    assert await names(client) == ["a", "b"]


async def test_a_full_page_without_link_is_followed_by_last_until_short() -> None:
    client = Scripted(
        {f"{PATH}?n=2": ["a", "b"], f"{PATH}?n=2&last=b": ["c", "d"], f"{PATH}?n=2&last=d": ["e"]}
    )
    assert await names(client) == ["a", "b", "c", "d", "e"]


async def test_a_registry_ignoring_last_stops_after_one_page_more() -> None:
    client = Scripted({f"{PATH}?n=2": ["a", "b"], f"{PATH}?n=2&last=b": ["a", "b"]})
    assert await names(client) == ["a", "b"]
    assert len(client.asked) == 2


async def test_null_tags_end_the_list() -> None:
    client = Scripted({f"{PATH}?n=2": (["a", "b"], f"{PATH}?n=2&last=b"), f"{PATH}?n=2&last=b": None})
    assert await names(client) == ["a", "b"]


async def test_a_refused_page_size_is_dropped_once() -> None:
    refused = RequestRejected("n too large", status=400, code="PAGINATION_NUMBER_INVALID")
    client = Scripted({f"{PATH}?n=2": refused, PATH: ["a"]})
    assert await names(client) == ["a"]
    later = Scripted({f"{PATH}?n=2": (["a"], f"{PATH}?n=2&last=a"), f"{PATH}?n=2&last=a": refused})
    with pytest.raises(RequestRejected):
        await names(later)


async def test_unknown_repository_and_garbage() -> None:
    with pytest.raises(NotFound):
        await names(Scripted({f"{PATH}?n=2": NotFound("no such repository", status=404)}))
    with pytest.raises(ProtocolError, match="not a list"):
        await names(Scripted({f"{PATH}?n=2": "a,b"}))


async def test_a_list_cut_short_is_an_error_only_when_it_must_be_complete() -> None:
    # A Link back to the first page (a loop), and a cap on pages: partial lists, fine for a catalog
    # hint, never for a source's tags that prune works from.
    looping = {
        f"{PATH}?n=2": (["a", "b"], f"{PATH}?n=2&last=b"),
        f"{PATH}?n=2&last=b": (["c"], f"{PATH}?n=2"),
    }
    assert await names(Scripted(looping)) == ["a", "b", "c"]
    with pytest.raises(ProtocolError, match="read incomplete"):
        await list_names(
            cast(RegistryClient, Scripted(looping)), PATH, "tags", scopes=(), page_size=2, complete=True
        )
    long = {
        f"{PATH}?n=2": (["a"], f"{PATH}?p=2"),
        f"{PATH}?p=2": (["b"], f"{PATH}?p=3"),
        f"{PATH}?p=3": ["c"],
    }
    client = cast(RegistryClient, Scripted(long))
    assert await list_names(client, PATH, "tags", scopes=(), page_size=2, max_pages=2) == ["a", "b"]
    with pytest.raises(ProtocolError, match="longer than 2 pages"):
        await list_names(client, PATH, "tags", scopes=(), page_size=2, max_pages=2, complete=True)
    assert await list_names(client, PATH, "tags", scopes=(), page_size=2, max_pages=3, complete=True) == [
        "a",
        "b",
        "c",
    ]
