package main

import (
	"debug/buildinfo"
	"os/exec"
	"strings"
	"testing"
)

// grpcModule is the module that only pkg/client/grpcresolver may bring in.
const grpcModule = "google.golang.org/grpc"

// The saga binary does not link grpc: the resolver lives in a package of
// its own so that the binary stays small and its dependencies few.
func TestBinaryDoesNotLinkGRPC(t *testing.T) {
	info, err := buildinfo.ReadFile(sagaBinary)
	if err != nil {
		t.Fatalf("read build info of %s: %v", sagaBinary, err)
	}
	if len(info.Deps) == 0 {
		t.Fatal("the binary lists no modules: cannot tell what it links")
	}
	for _, dep := range info.Deps {
		if dep.Path == grpcModule || strings.HasPrefix(dep.Path, grpcModule+"/") {
			t.Errorf("the saga binary links %s %s", dep.Path, dep.Version)
		}
	}
}

// Package client, which every Go user of Saga imports, does not import
// grpc either: only its subpackage grpcresolver does, which shows that the
// check sees grpc where it is.
func TestClientDoesNotImportGRPC(t *testing.T) {
	if deps := grpcDeps(t, "github.com/sagaproject/saga/pkg/client"); len(deps) > 0 {
		t.Errorf("pkg/client depends on %s", strings.Join(deps, ", "))
	}
	if deps := grpcDeps(t, "github.com/sagaproject/saga/pkg/client/grpcresolver"); len(deps) == 0 {
		t.Error("go list -deps finds no grpc package under pkg/client/grpcresolver: the check above proves nothing")
	}
}

// grpcDeps are the grpc packages that pkg depends on, as go list sees them.
func grpcDeps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	var deps []string
	for _, dep := range strings.Fields(string(out)) {
		if dep == grpcModule || strings.HasPrefix(dep, grpcModule+"/") {
			deps = append(deps, dep)
		}
	}
	return deps
}
