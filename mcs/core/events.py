"""The core/v1 Events mcs posts: pure functions that build them, no I/O.

Every Event's name is derived from what it reports (the object's uid and the
transition or the content), so posting the same Event again, after a retried
reconcile or a restart, creates nothing new; the shell also remembers the names it
posted, so a state that persists (a global-service note, dropped endpoints) costs one
write, not one per reconcile.

* `conflict_event`: a ServiceExport's Conflict condition appeared or cleared.
* `withdrawal_event`: a ServiceImport's Ready reason turned into or out of
  ``MemberWithdrawn``.
* `dropped_event`: endpoints of the export's cluster that are not imported (`mcs.core.trust`).
* `merge_rules_event`: the export's results are held back while a peer computes the
  merge with other rules (`mcs.core.plan`'s skew check).
* `service_event`: a note on a global Service (`mcs.core.globalsvc.Note`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from mcs.core.api import API_VERSION, FIELD_MANAGER, Obj
from mcs.core.model import format_time
from mcs.core.trust import DroppedEndpoint

__all__ = [
    "WITHDRAWN_REASON",
    "conflict_event",
    "dropped_event",
    "event",
    "service_event",
    "withdrawal_event",
]

WITHDRAWN_REASON = "MemberWithdrawn"
_MESSAGE_MAX = 1024


def event(
    obj: Obj,
    api_version: str,
    kind: str,
    identity: str,
    what: tuple[str, str, str],
    cluster: str,
    now: datetime,
) -> dict[str, Any]:
    """A core/v1 Event on ``obj``: ``what`` is (type, reason, message). Its name is
    derived from ``identity``, so creating the same Event again creates nothing new."""
    meta = obj["metadata"]
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    stamp = format_time(now)
    type_, reason, message = what
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{digest}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": api_version,
            "kind": kind,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message,
        "source": {"component": FIELD_MANAGER},
        "reportingComponent": FIELD_MANAGER,
        "reportingInstance": cluster,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def conflict_event(
    export: Obj, previous: Sequence[Obj], conditions: Sequence[Obj], cluster: str, now: datetime
) -> dict[str, Any] | None:
    """An Event for an export whose Conflict condition appeared or cleared, else None.

    Its name is derived from the export's uid and the transition, so repeating the
    same transition (a retried reconcile, a restart) creates nothing new."""
    before = {c.get("type"): c.get("status") for c in previous}.get("Conflict", "False")
    after = next((c for c in conditions if c.get("type") == "Conflict"), None)
    if after is None or after.get("status") == before:
        return None
    meta = export["metadata"]
    appeared = after["status"] == "True"
    transition = f"{meta.get('uid')}/{after['status']}/{after.get('lastTransitionTime')}"
    return event(
        export,
        API_VERSION,
        "ServiceExport",
        transition,
        ("Warning", "ConflictDetected", after.get("message", ""))
        if appeared
        else ("Normal", "ConflictResolved", "No conflicts any more."),
        cluster,
        now,
    )


def withdrawal_event(
    service_import: Obj,
    previous: Sequence[Obj],
    conditions: Sequence[Obj],
    cluster: str,
    now: datetime,
) -> dict[str, Any] | None:
    """An Event on the ServiceImport when its Ready reason turned into or out of
    ``MemberWithdrawn``, else None. The name derives from the import's uid and the new
    message, so a retried reconcile creates nothing new."""

    def ready(conds: Sequence[Obj]) -> Obj:
        return next((c for c in conds if c.get("type") == "Ready"), {})

    before, after = ready(previous), ready(conditions)
    was, now_w = before.get("reason") == WITHDRAWN_REASON, after.get("reason") == WITHDRAWN_REASON
    if was == now_w and (not now_w or before.get("message") == after.get("message")):
        return None
    meta = service_import["metadata"]
    what = (
        ("Warning", WITHDRAWN_REASON, after.get("message", ""))
        if now_w
        else ("Normal", "MemberReturned", "Every exporting member is reachable.")
    )
    identity = f"{meta.get('uid')}/{after.get('reason')}/{after.get('message')}"
    return event(service_import, API_VERSION, "ServiceImport", identity, what, cluster, now)


def dropped_event(
    export: Obj, dropped: Sequence[DroppedEndpoint], cluster: str, now: datetime
) -> dict[str, Any]:
    """A Warning Event on ``export`` listing the endpoints its cluster's slices lost.

    Its name is derived from the export's uid and the dropped set, so reporting the same
    set again (a resync, a restart, another local member) creates nothing new."""
    meta = export.get("metadata") or {}
    items = sorted(f"{d.slice}: {d}" for d in dropped)
    shown = "; ".join(items[:20]) + (f"; and {len(items) - 20} more" if len(items) > 20 else "")
    message = f"{len(items)} endpoint(s) not imported into the clusterset: {shown}"
    return event(
        export,
        API_VERSION,
        "ServiceExport",
        json.dumps([meta.get("uid"), items]),
        ("Warning", "EndpointsDropped", message[:_MESSAGE_MAX]),
        cluster,
        now,
    )


def merge_rules_event(
    export: Obj, message: str, peers: Mapping[str, str], cluster: str, now: datetime
) -> dict[str, Any]:
    """A Warning Event on ``export``: its results are held back while peers compute the
    merge with other rules. Named by the export's uid and the peers' versions, so the
    same disagreement is posted once."""
    uid = (export.get("metadata") or {}).get("uid")
    return event(
        export,
        API_VERSION,
        "ServiceExport",
        json.dumps([uid, sorted(peers.items())]),
        ("Warning", MERGE_RULES_MISMATCH, message[:_MESSAGE_MAX]),
        cluster,
        now,
    )


MERGE_RULES_MISMATCH = "MergeRulesMismatch"
"""The reason of the Event and of the export's Ready=False while merge rules disagree."""


def service_event(
    service: Obj, what: tuple[str, str, str], cluster: str, now: datetime
) -> dict[str, Any]:
    """An Event on a global Service for a note, ``what`` being (type, reason, message).
    Its name comes from the Service's uid and the note, so posting it again creates nothing."""
    uid = (service.get("metadata") or {}).get("uid")
    _, reason, message = what
    return event(service, "v1", "Service", f"{uid}/{reason}/{message}", what, cluster, now)
