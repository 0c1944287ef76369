// Command etcd is etcd's own server entry point, built from its published
// Go module: `go install` of go.etcd.io/etcd fails on its replace directives,
// and Debian's etcd 3.4 is older than Kubernetes supports.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
