// strata-cri-pull: pulls an image through containerd as the CRI plugin
// does (containerd 1.6's client, unpacking into a snapshotter, with the
// CRI's handler that labels each layer with the image reference and its
// digest), for the tests and the benchmark: `ctr images pull` sends no
// such labels. Plain HTTP to every registry (the tests' is on loopback).
//
// Built offline in GOPATH mode from Debian's Go packages:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off go build -o BIN .
//
// Usage: strata-cri-pull ADDRESS NAMESPACE SNAPSHOTTER REF
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/pkg/snapshotters"
	"github.com/containerd/containerd/remotes/docker"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: strata-cri-pull ADDRESS NAMESPACE SNAPSHOTTER REF")
		os.Exit(2)
	}
	address, namespace, snapshotter, ref := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	client, err := containerd.New(address)
	if err != nil {
		fmt.Fprintf(os.Stderr, "connect %s: %v\n", address, err)
		os.Exit(1)
	}
	defer client.Close()
	ctx := namespaces.WithNamespace(context.Background(), namespace)
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchAllHosts)),
	})
	image, err := client.Pull(ctx, ref,
		containerd.WithResolver(resolver),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(snapshotter),
		containerd.WithImageHandlerWrapper(snapshotters.AppendInfoHandlerWrapper(ref)),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pull %s: %v\n", ref, err)
		os.Exit(1)
	}
	fmt.Println(image.Name())
}
