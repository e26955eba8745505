// containerd's snapshotter conformance suite (the testsuite package of
// containerd's own source, as Debian's golang-github-containerd-containerd-dev
// ships it) against `strata snapshotter`, through containerd's gRPC proxy
// client: exactly what containerd itself calls for a proxy_plugins entry.
//
// Each subtest gets a snapshotter of its own: a strata process with its own
// store root and socket under the subtest's directory, stopped by pid (SIGTERM)
// afterwards, and every mount left under that directory detached.
//
// Built offline in GOPATH mode (tests/it/snapshotter/conformance.rs runs it):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off \
//	STRATA_BIN=target/debug/strata go test -count=1 -parallel 2 -v .
package conformance

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/pkg/dialer"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
)

func TestStrata(t *testing.T) {
	bin := os.Getenv("STRATA_BIN")
	if bin == "" {
		t.Fatal("STRATA_BIN must name the strata binary")
	}
	testsuite.SnapshotterSuite(t, "Strata", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		return startStrata(bin, root)
	})
}

func startStrata(bin, root string) (snapshots.Snapshotter, func() error, error) {
	sock := filepath.Join(root, "s.sock")
	logFile, err := os.Create(filepath.Join(root, "snapshotter.log"))
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin, "--root", filepath.Join(root, "store"), "--log-level", "info",
		"snapshotter", "--address", sock)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, nil, err
	}
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		return detachMountsUnder(root)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			_ = stop()
			log, _ := os.ReadFile(filepath.Join(root, "snapshotter.log"))
			return nil, nil, fmt.Errorf("strata snapshotter did not listen on %s: %s", sock, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Dialled as containerd dials a proxy plugin (services/server).
	conn, err := grpc.Dial(dialer.DialAddress(sock), grpc.WithInsecure(),
		grpc.WithContextDialer(dialer.ContextDialer))
	if err != nil {
		_ = stop()
		return nil, nil, err
	}
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "strata")
	return sn, func() error {
		conn.Close()
		return stop()
	}, nil
}

// detachMountsUnder detaches every mount below dir, deepest first: the
// snapshots' mounts the suite left (their daemons then exit).
func detachMountsUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL {
			return fmt.Errorf("unmount %s: %w", p, err)
		}
	}
	return nil
}
