"""``mcs status``: the clusterset as one report (members, controllers, exported services).

Like ``cilium clustermesh status``, for the Multi-Cluster Services API. It only
reads; it never writes to a cluster.

The package is a functional core in a thin shell, like the controller:

* ``discover`` (``mcs.status.discover``, I/O) finds the controllers and the members
  their Secrets name (``mcs.status.controllers``), and reads each controller Pod's
  ``/readyz`` and ``/metrics`` through the API server's pod proxy; docs/status.md.
* ``collect`` (``mcs.status.collect``, I/O) reads every member cluster concurrently, each within one
  deadline (``time_limit``, seconds), and each controller's ``/readyz``; it returns a
  `Snapshot` of plain API dicts. A member that cannot be read is recorded with
  the error, never raised. Every ``ApiClient`` it opens is closed.
* ``summarize`` (``mcs.status.report``, pure) turns a `Snapshot` into a `Report`. It decides each
  service's merge with the controller's own pure code (``mcs.core.plan.evaluate``), so
  the winner, the conflict reasons and the message are exactly what a controller
  with the same cluster ids writes. It also compares that verdict with the
  conditions the controller has written on each ServiceExport (``in_sync``).
  ``exit_code`` (pure) applies ``--fail-on``.
* ``render_text`` (``mcs.status.render``, pure) draws a `Report` with ``rich``
  tables for a terminal; ``render`` also gives JSON or YAML.
* ``mcs.status.cli``: the flags, and ``--watch`` (a ``rich`` live display redrawn
  every ``--interval`` seconds until Ctrl-C).

JSON / YAML structure (``Report.model_dump(mode="json")``; keys are stable, lists
are ordered as described, absent values are ``null``)::

    {
      "members": [                      # in the order the controller's Secret names them
                                        # (or --contexts / kubeconfig order)
        {"context": "cluster1", "cluster_id": "cluster1",
         "server": "https://127.0.0.1:6443",
         "reachable": true,             # false: a read failed or timed out
         "error": null,                 # why not reachable, or a reachable member's
                                        # misconfiguration (invalid/duplicate cluster id)
         "server_version": "v1.36.3",
         "exports": 1, "imports": 1,    # counts (in --namespace); null when unreachable
         "controller_view": "connected"}   # the worst any controller Pod says of it:
                                        # connected | disconnected | withdrawn | null
      ],
      "controllers": [                  # each --controller, then each controller Pod found
        {"url": "http://127.0.0.1:8081", "reachable": true, "ready": false,
         "reason": "caches not synced: cluster1/exports",   # "ok" when ready
         "context": null, "pod": null, "mode": null, "leader": null,
         "members": {}},                # a Pod: url "CONTEXT/NAMESPACE/POD", its context,
                                        # name, mode, whether it holds the Lease, and
                                        # its view of each member by cluster id
      ],
      "services": [                     # sorted by namespace, name
        {"namespace": "demo", "name": "web",
         "state": "conflict",           # worst of: invalid, conflict, missing, pending,
                                        # ok; "unexported" = imports but no export
         "winner": "cluster1",          # cluster id of the oldest valid export, or null
         "exports": [                   # oldest first (creationTimestamp, then cluster id)
           {"cluster": "cluster1", "context": "cluster1",
            "created": "2026-01-02T03:04:05Z",
            "state": "conflict",        # ok | conflict | invalid (as the merge decides)
            "reason": "PortConflict",   # conflict reasons joined by ",", or the invalid
                                        # reason (NoService, InvalidServiceType), or null
            "message": null,            # why the export is invalid, else null
            "winner": true,
            "conditions": {             # as written on the ServiceExport; types absent
              "Valid": {"status": "True", "reason": "Valid", "message": "..."},
              "Ready": {...}, "Conflict": {...}},
            "in_sync": true}            # Valid and Conflict say what the merge decides
         ],
         "imports": [                   # members in order; only members with an import
                                        # when the service is not (validly) exported
           {"cluster": "cluster2", "context": "cluster2",
            "state": "present",         # present | missing (namespace exists, no import)
                                        # | no-namespace | unknown (member unreachable)
                                        # | unexpected (an import but no valid export)
            "type": "ClusterSetIP", "ips": ["10.102.0.10"],
            "ports": [{"name": "http", "protocol": "TCP", "port": 80,
                       "app_protocol": null}],
            "clusters": ["cluster1", "cluster2"]}   # the import's status.clusters
         ],
         "conflict": {                  # null when the valid exports agree
           "reasons": ["PortConflict"], "fields": ["ports"], "winner": "cluster1",
           "clusters": ["cluster2"],    # the clusters that disagree with the winner
           "message": "Conflicting ports: 1/2 clusters disagree; ..."},
         "unknown": ["cluster3"]}       # contexts not read: their exports are unknown
      ],
      "summary": {"members": 2, "unreachable": 0, "member_errors": 0,
                  "services": 1, "conflicts": 1,   # services in conflict
                  "invalid": 0,                    # invalid ServiceExports
                  "missing_imports": 0, "pending": 0,   # exports not in_sync
                  "controllers_not_ready": 0,
                  "unreachable_by_controller": 0},   # members a controller has lost
      "global_services": [              # added later; sorted by namespace, name, cluster
        {"cluster": "cluster2", "namespace": "default", "name": "rebel-base",
         "is_global": true, "shared": false,
         "affinity": "",                # "local", "remote", "" (none or unknown)
         "backends": {"cluster1": 2, "cluster2": 1},   # ready endpoints used, by source
         "held_back": [],               # clusters affinity keeps out right now
         "notes": []}                   # what the controller says (its Events' messages)
      ],
      "version": "0.2.0",               # the mcs release that made the report (added in 0.2.0)
      "membership": {                   # added later: where the members come from
        "source": "controller",         # controller (its Secret) | kubeconfig | contexts
        "controllers": ["cluster1/mcs-system/mcs-controller"],   # CONTEXT/NS/DEPLOYMENT
        "note": null}                   # why every context is a member, when it is
    }

Exit codes: 0, or 1 when ``--fail-on`` finds a problem, 2 when the configuration
cannot work (kubeconfig, contexts, ``--cluster-id``).
"""

from mcs.status.cli import add_status_parser
from mcs.status.collect import (
    DEFAULT_TIMEOUT,
    ControllerSnapshot,
    MemberSnapshot,
    Snapshot,
    collect,
)
from mcs.status.render import Output, render, render_text, renderable
from mcs.status.report import (
    ConditionReport,
    ConflictReport,
    ControllerReport,
    ExportReport,
    FailOn,
    ImportReport,
    MemberReport,
    PortReport,
    Report,
    ServiceReport,
    Summary,
    exit_code,
    summarize,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "ConditionReport",
    "ConflictReport",
    "ControllerReport",
    "ControllerSnapshot",
    "ExportReport",
    "FailOn",
    "ImportReport",
    "MemberReport",
    "MemberSnapshot",
    "Output",
    "PortReport",
    "Report",
    "ServiceReport",
    "Snapshot",
    "Summary",
    "add_status_parser",
    "collect",
    "exit_code",
    "render",
    "render_text",
    "renderable",
    "summarize",
]
