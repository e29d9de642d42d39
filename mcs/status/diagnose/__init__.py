"""``kubectl mcs diagnose``: checks of a clusterset's installation, each finding one line
with its fix.

One module per area of checks; each has a pure ``decide``-style function (the verdict
from objects already read, unit-tested) and a small async reader:

* `crds`: the MCS CRDs, established, with the versions the controller and CoreDNS use;
* `admission`: Kubernetes >= 1.30 and the ValidatingAdmissionPolicy and its binding;
* `controller`: the controller's Deployment (and the Secret keys it needs) and Lease;
* `members`: the members the controller is configured with (its Secret);
* `reach`: each member as the controller sees it (its credentials, not the user's);
* `credentials`: token and client-certificate expiry;
* `coredns`: the Corefile's multicluster option and CoreDNS's right to read ServiceImports;
* `namespaces`: exports in namespaces the controller's policy leaves out;
* `runner` runs them all, `findings` holds the result and its output, `cli` the flags.
"""
