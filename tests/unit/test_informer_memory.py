"""mcs.runtime.informer's memory bounds (#29): a list page is read up to a byte cap
before it is decoded (a larger one is asked again with a smaller limit), and an object
over the per-object cap is left out of the cache, logged and counted; the rest of the
kind is cached as usual."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mcs.core.api import ENDPOINT_SLICES, SERVICES
from mcs.runtime import informer as informer_mod
from mcs.runtime.informer import Informer


class FakeContent:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.read_bytes = 0

    async def read(self, n: int) -> bytes:
        chunk = self.body[self.read_bytes : self.read_bytes + n]
        self.read_bytes += len(chunk)
        return chunk


class FakeResponse:
    status = 200
    reason = "OK"

    def __init__(self, body: bytes) -> None:
        self.content = FakeContent(body)
        self.content_length = None  # chunked, as the API server's lists are

    async def read(self) -> bytes:  # what the informer used before #29: the whole body
        return self.content.body

    def release(self) -> None:
        pass


class FakeApi:
    """Serves a list of Services in pages (``limit`` and ``continue`` as offsets)."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.limits: list[int] = []
        self.responses: list[FakeResponse] = []

    async def call_api(self, path: str, method: str, **kw: Any) -> FakeResponse:
        params = dict(kw["query_params"])
        limit = int(params["limit"])
        start = int(params.get("continue", "0"))
        self.limits.append(limit)
        page = self.items[start : start + limit]
        more = start + limit < len(self.items)
        body = {
            "kind": "ServiceList",
            "apiVersion": "v1",
            "metadata": {
                "resourceVersion": "7",
                **({"continue": str(start + limit)} if more else {}),
            },
            "items": page,
        }
        response = FakeResponse(json.dumps(body).encode())
        self.responses.append(response)
        return response


def service(name: str, padding: int = 0) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns"}
    if padding:
        meta["labels"] = {f"k{i}": "v" * 50 for i in range(padding // 60)}
    return {"metadata": meta, "spec": {"ports": [{"port": 80}]}}


@pytest.fixture
def small_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(informer_mod, "MAX_PAGE_BYTES", 300_000, raising=False)
    monkeypatch.setattr(informer_mod, "MAX_OBJECT_BYTES", 100_000, raising=False)


async def test_an_oversized_object_is_left_out_and_the_rest_cached(small_caps: None) -> None:
    items = [service(f"s{i}") for i in range(20)]
    items.insert(7, service("huge", padding=200_000))
    api = FakeApi(items)
    informer = Informer(api, cluster="c1", kind=SERVICES, transform=lambda o: o)  # type: ignore[arg-type]
    await informer._relist()
    assert sorted(name for _, name in informer.keys(namespace="ns")) == sorted(
        f"s{i}" for i in range(20)
    )
    assert informer.get("ns", "huge") is None, "an object over the cap was cached whole"
    # the watch path too: the object grows past the cap, so it is dropped from the cache
    informer._apply({"type": "MODIFIED", "object": service("s3", padding=200_000)})
    assert informer.get("ns", "s3") is None


async def test_list_pages_are_read_up_to_the_byte_cap(small_caps: None) -> None:
    items = [service(f"s{i}", padding=20_000) for i in range(60)]  # ~1.2 MB in all
    api = FakeApi(items)
    informer = Informer(api, cluster="c1", kind=SERVICES, transform=lambda o: o)  # type: ignore[arg-type]
    await informer._relist()
    assert len(informer) == 60
    assert api.limits[0] == 250  # the page size for Services
    assert min(api.limits) < 250, "the limit was not lowered for a page over the cap"
    # no more than the cap (and one read's chunk) of any page was read
    assert max(r.content.read_bytes for r in api.responses) <= 300_000 + 2**16


async def test_one_object_over_the_page_cap_is_an_error_not_a_decode(
    small_caps: None,
) -> None:
    api = FakeApi([service("huge", padding=400_000)])
    informer = Informer(api, cluster="c1", kind=SERVICES, transform=lambda o: o)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="more than 300000 bytes"):
        await informer._relist()
    assert api.limits[-1] == 1 and len(informer) == 0


def test_page_sizes_by_kind() -> None:
    slices = Informer(None, cluster="c1", kind=ENDPOINT_SLICES)  # type: ignore[arg-type]
    assert slices._page_size == 100
