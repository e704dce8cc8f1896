"""The one mapping of network failures to TransportError (``registry/http/transport.py``)."""

from __future__ import annotations

import aiohttp
import pytest

from mirrord.registry.errors import TransportError
from mirrord.registry.http.transport import network_error, network_errors_as_transport


def test_network_error_names_the_place_what_failed_and_keeps_the_cause() -> None:
    cause = TimeoutError()
    error = network_error(cause, "GET r.example", detail="at byte 7", registry="r.example", reference="x")
    assert str(error) == "GET r.example: timed out at byte 7"
    assert error.__cause__ is cause
    assert (error.registry, error.reference, error.retryable) == ("r.example", "x", True)
    assert str(network_error(None, "r.example/a")) == "r.example/a: connection closed early"
    broken = network_error(aiohttp.ClientPayloadError("secret=1"), "r")
    assert str(broken) == "r: connection broke while reading the body"


def test_the_block_maps_network_failures_and_lets_other_errors_pass() -> None:
    block = network_errors_as_transport("r.example", registry="r.example", repository="a/b")
    with pytest.raises(TransportError, match=r"^r\.example: server disconnected$") as caught, block:
        raise aiohttp.ServerDisconnectedError()
    assert caught.value.repository == "a/b"
    assert isinstance(caught.value.__cause__, aiohttp.ServerDisconnectedError)
    with pytest.raises(KeyError), network_errors_as_transport("r.example"):
        raise KeyError("a programming error is not a network failure")
