package e2e

import (
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCLI_CheckNamesFileAndLine is the acceptance check an installer meets
// first: a typo in the config is reported with its file and line.
func TestCLI_CheckNamesFileAndLine(t *testing.T) {
	bad := writeFile(t, "bad.yaml", `
agent:
  id: gw-1
  data_dri: /tmp/x
inputs:
  - type: sim
    stations: 3
    interval_s: 10
`)
	out, code := runCmd(t, "citysense-agent", "check", "-c", bad)
	if code == 0 {
		t.Fatalf("check accepted a bad file:\n%s", out)
	}
	for _, want := range []string{bad + ":3:", "data_dri", bad + ":7:", "interval_s"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}

	good := writeFile(t, "good.yaml", `
agent:
  id: gw-1
inputs:
  - type: sim
    stations: 3
`)
	out, code = runCmd(t, "citysense-agent", "check", "-c", good)
	if code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("check rejected a good file (exit %d):\n%s", code, out)
	}

	badC := writeFile(t, "collector.yaml", `
node:
  name: c1
htp:
  listen: 127.0.0.1:8080
`)
	out, code = runCmd(t, "citysense-collector", "check", "-c", badC)
	if code == 0 || !strings.Contains(out, badC+":3:") || !strings.Contains(out, "htp") {
		t.Fatalf("collector check (exit %d) did not name %s:3:\n%s", code, badC, out)
	}
}

func TestCLI_VersionAndHelp(t *testing.T) {
	for _, prog := range []string{"citysense-agent", "citysense-collector"} {
		out, code := runCmd(t, prog, "version")
		if code != 0 || !strings.HasPrefix(out, prog+" ") || !strings.Contains(out, "go1.") || !strings.Contains(out, "linux/") {
			t.Errorf("%s version (exit %d):\n%s", prog, code, out)
		}
		out, code = runCmd(t, prog, "--help")
		if code != 0 {
			t.Errorf("%s --help exit %d", prog, code)
		}
		for _, want := range []string{"SYNOPSIS", "run", "check", "version", "EXAMPLES", "EXIT STATUS"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s --help lacks %q", prog, want)
			}
		}
		if _, code := runCmd(t, prog, "no-such-command"); code != 2 {
			t.Errorf("%s no-such-command: exit %d, want 2", prog, code)
		}
	}
}

// TestCLI_ExampleConfigsAreValid keeps the shipped examples in step with the
// code: every file under configs/ must pass its program's check.
func TestCLI_ExampleConfigsAreValid(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	files := map[string]string{
		"configs/agent.yaml":          "citysense-agent",
		"configs/collector.yaml":      "citysense-collector",
		"configs/demo/agent.yaml":     "citysense-agent",
		"configs/demo/collector.yaml": "citysense-collector",
	}
	for f, prog := range files {
		out, code := runCmd(t, prog, "check", "-c", filepath.Join(root, f))
		if code != 0 || !strings.HasSuffix(strings.TrimSpace(out), ": ok") {
			t.Errorf("%s check %s: exit %d\n%s", prog, f, code, out)
		}
	}
}
