// Command coredns is CoreDNS with only the plugins that mcs's local mesh needs to
// serve the Multi-Cluster Services zone clusterset.local.
//
// CoreDNS 1.12.2 and later answer MCS queries natively: the kubernetes plugin's
// `multicluster <zones>` option watches ServiceImports (multicluster.x-k8s.io/v1alpha1)
// and the EndpointSlices labelled multicluster.kubernetes.io/service-name. No external
// plugin is needed. The template plugin answers TXT dns-version.clusterset.local with
// the MCS DNS schema version "1.0.0"; the kubernetes plugin would say "1.1.0", the
// schema version of cluster.local.
//
// Built by mcs/mesh/build-binaries.sh, which adds the github.com/coredns/coredns
// requirement (COREDNS_VERSION in mcs/mesh/binaries.py) to go.mod before building.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/template"
)

// The plugin chain, in CoreDNS's own order (core/dnsserver/zdirectives.go): a query
// passes errors, log and template before it reaches kubernetes.
func init() {
	dnsserver.Directives = []string{"bind", "ready", "errors", "log", "template", "kubernetes"}
}

func main() {
	coremain.Run()
}
