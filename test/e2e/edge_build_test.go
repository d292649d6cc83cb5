package e2e

// Edge deployment (issue 9): the agent's import graph and its size on the
// gateways, and the cross builds the other edge tests run under qemu-user.
// Helpers here start with "edge" to stay clear of the other suites.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// edgeRoot is the repository's root directory.
func edgeRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test's source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// edgeForbidden are the packages the agent must not link (DESIGN.md,
// principle 3): the embedded NATS server, the collector with its store and
// portal, and memberlist, which only the collector's cluster uses.
var edgeForbidden = []string{
	"github.com/nats-io/nats-server/",
	"github.com/citysense/citysense/collector",
	"github.com/hashicorp/memberlist",
}

// TestEdge_AgentImportGraph guards the agent's import graph with `go list
// -deps` for every edge platform, so that a build tag cannot sneak a heavy
// package in on one architecture only.
func TestEdge_AgentImportGraph(t *testing.T) {
	root := edgeRoot(t)
	for _, p := range []struct{ goarch, goarm string }{{"amd64", ""}, {"arm64", ""}, {"arm", "6"}, {"arm", "7"}, {"riscv64", ""}, {"mipsle", ""}} {
		cmd := exec.Command("go", "list", "-deps", "./agent/cmd/citysense-agent")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+p.goarch, "GOARM="+p.goarm, "GOMIPS=softfloat")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps (%s%s): %v\n%s", p.goarch, p.goarm, err, edgeStderr(err))
		}
		deps := strings.Fields(string(out))
		if len(deps) < 50 {
			t.Fatalf("go list -deps (%s%s) listed only %d packages: %q", p.goarch, p.goarm, len(deps), out)
		}
		var bad []string
		have := map[string]bool{}
		for _, d := range deps {
			have[d] = true
			for _, f := range edgeForbidden {
				if strings.HasPrefix(d, f) {
					bad = append(bad, d)
				}
			}
		}
		if len(bad) > 0 {
			t.Errorf("linux/%s%s: the agent links %d forbidden packages: %s", p.goarch, p.goarm, len(bad), strings.Join(bad, ", "))
		}
		// The guard is only worth something if it sees the agent's real
		// graph: the agent's own packages and its NATS client must be in it.
		for _, must := range []string{"github.com/citysense/citysense/agent", "github.com/citysense/citysense/agent/internal/buffer", "github.com/nats-io/nats.go"} {
			if !have[must] {
				t.Errorf("linux/%s%s: %s is not in the agent's import graph; the guard reads the wrong list", p.goarch, p.goarm, must)
			}
		}
		t.Logf("linux/%s%s: %d packages, none forbidden", p.goarch, p.goarm, len(deps))
	}
}

// edgeMaxAgentBytes is the bound for the stripped arm64 agent:
// 12 MB, counted in decimal megabytes (the stricter reading).
const edgeMaxAgentBytes = 12_000_000

// TestEdge_AgentSizeArm64 builds the agent for linux/arm64 as `make cross`
// does (static, stripped, trimpath) and checks it fits the bound.
func TestEdge_AgentSizeArm64(t *testing.T) {
	bin := edgeCrossBuild(t, "agent", "arm64", "")
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("citysense-agent linux/arm64, stripped: %d bytes (%.2f MB, %.2f MiB); bound %d bytes", st.Size(), float64(st.Size())/1e6, float64(st.Size())/(1<<20), edgeMaxAgentBytes)
	if st.Size() > edgeMaxAgentBytes {
		t.Fatalf("the arm64 agent is %d bytes, over the %d-byte bound", st.Size(), edgeMaxAgentBytes)
	}
	// The file is what it claims: a static arm64 ELF executable.
	f, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	const emAArch64 = 183
	if len(f) < 20 || string(f[:4]) != "\x7fELF" || f[4] != 2 || int(f[18])|int(f[19])<<8 != emAArch64 {
		t.Fatalf("%s is not a 64-bit arm64 ELF file (header % x)", bin, f[:min(20, len(f))])
	}
	if strings.Contains(string(f), "/lib/ld-linux-aarch64.so") {
		t.Fatalf("%s names a dynamic loader; it must be static", bin)
	}
}

// edgeCrossBuild builds one program for linux/goarch (goarm for arm) the way
// `make cross` does and returns the binary's path in a test directory.
func edgeCrossBuild(t *testing.T, prog, goarch, goarm string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), fmt.Sprintf("citysense-%s-linux-%s%s", prog, goarch, goarm))
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w", "-o", out, "./"+prog+"/cmd/citysense-"+prog)
	cmd.Dir = edgeRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM="+goarm, "GOMIPS=softfloat")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cross-build %s for linux/%s%s: %v\n%s", prog, goarch, goarm, err, b)
	}
	return out
}

func edgeStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
