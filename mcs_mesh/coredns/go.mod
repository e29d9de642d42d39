// A template: build-binaries.sh copies this folder to a work directory, requires
// github.com/coredns/coredns at COREDNS_VERSION (mcs/mesh/binaries.py) and runs
// `go mod tidy` there. Nothing is resolved or built in the source tree.
module example.invalid/mcs-coredns

go 1.25.0
