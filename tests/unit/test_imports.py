"""mcs.core.imports and mcs.core.events: the import's status under withdrawn members, and
the Events on its transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mcs.core.events import WITHDRAWN_REASON, withdrawal_event
from mcs.core.imports import desired_import_status
from mcs.core.merge import MergeResult, merge
from mcs.core.model import ExportRecord

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def headless() -> MergeResult:
    return merge([ExportRecord(cluster="c1", created=T0, ports=(), type="Headless")])


def test_import_status_names_the_withdrawn_members() -> None:
    plain = desired_import_status(headless(), {"spec": {}}, [], T0)
    assert plain["conditions"][0]["reason"] == "Ready"
    later = T0 + timedelta(minutes=5)
    withdrawn = [("c2", "2026-01-01T00:01:00Z"), ("c3", None)]
    out = desired_import_status(headless(), {"spec": {}}, plain["conditions"], later, withdrawn)
    ready = out["conditions"][0]
    assert ready["reason"] == WITHDRAWN_REASON and ready["status"] == "True"
    assert "c2 (since 2026-01-01T00:01:00Z), c3" in ready["message"]
    assert ready["lastTransitionTime"] == "2026-01-01T00:00:00Z", "Ready did not change status"


def test_events_on_withdrawal_and_return_only() -> None:
    imp = {"metadata": {"name": "web", "namespace": "ns", "uid": "u1"}}
    plain = desired_import_status(headless(), {"spec": {}}, [], T0)["conditions"]
    out = desired_import_status(headless(), {"spec": {}}, plain, T0, [("c2", "t")])["conditions"]
    assert withdrawal_event(imp, plain, plain, "c1", T0) is None
    went = withdrawal_event(imp, plain, out, "c1", T0)
    assert went is not None and went["reason"] == WITHDRAWN_REASON and went["type"] == "Warning"
    assert "c2" in went["message"]
    assert withdrawal_event(imp, out, out, "c1", T0) is None
    back = withdrawal_event(imp, out, plain, "c1", T0)
    assert back is not None and back["reason"] == "MemberReturned"
    assert back["metadata"]["name"] != went["metadata"]["name"]
    assert withdrawal_event(imp, plain, out, "c1", T0) == went, "same transition, same name"
