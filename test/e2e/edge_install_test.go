package e2e

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// edgeState describes every CitySense file in a root (path, type, mode,
// owner, content hash or link target) and the citysense user and group
// entries, one line each: two equal states are one installation.
func edgeState(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	for _, top := range []string{"etc/citysense", "var/lib/citysense", "usr/bin", "etc/systemd/system", "lib/systemd/system", "usr/sbin/policy-rc.d"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if !strings.Contains(rel, "citysense") && !strings.Contains(rel, "policy-rc.d") {
				return nil
			}
			info, err := os.Lstat(p)
			if err != nil {
				return err
			}
			st := info.Sys().(*syscall.Stat_t)
			what := ""
			switch {
			case info.Mode()&fs.ModeSymlink != 0:
				target, _ := os.Readlink(p)
				what = "-> " + target
			case info.Mode().IsRegular():
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				what = fmt.Sprintf("sha256:%x", sha256.Sum256(b))
			}
			lines = append(lines, fmt.Sprintf("%s %v %d:%d %s", rel, info.Mode(), st.Uid, st.Gid, what))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, db := range []string{"etc/passwd", "etc/group", "etc/shadow"} {
		b, err := os.ReadFile(filepath.Join(root, db))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "citysense:") {
				// shadow's third field is the day of the last change.
				if db == "etc/shadow" {
					f := strings.Split(l, ":")
					f[2] = "-"
					l = strings.Join(f, ":")
				}
				lines = append(lines, db+" "+l)
			}
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestEdge_InstallScript runs deploy/install.sh twice in a Debian root, once
// with the .deb and once with the plain binary, and checks that the second
// run changes nothing, that the result is one consistent installation
// configured as asked, and that a changed flag or a bad one behave.
func TestEdge_InstallScript(t *testing.T) {
	edgeTool(t, "chroot", "coreutils")
	src := edgeRoot(t)
	agentBin := filepath.Join(binDir, "citysense-agent")
	for _, method := range []string{"deb", "binary"} {
		t.Run(method, func(t *testing.T) {
			root := edgeDebianRoot(t)
			dist := filepath.Join(root, "opt/dist")
			if err := os.MkdirAll(dist, 0o755); err != nil {
				t.Fatal(err)
			}
			edgeRun(t, "", nil, "cp", filepath.Join(src, "deploy/install.sh"), dist)
			if method == "deb" {
				edgeRun(t, src, nil, filepath.Join(src, "deploy/deb/build.sh"), "agent", "amd64", "1.0.0", agentBin, filepath.Join(dist, "deb"))
			} else {
				edgeRun(t, "", nil, "cp", agentBin, filepath.Join(dist, "citysense-agent-linux-amd64"))
				edgeRun(t, "", nil, "cp", filepath.Join(src, "deploy/systemd/citysense-agent.service"), dist)
				sum := edgeRun(t, dist, nil, "sha256sum", "citysense-agent-linux-amd64")
				if err := os.WriteFile(filepath.Join(dist, "SHA256SUMS"), []byte(sum), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// Real credentials, as the collector issues them.
			credDir := t.TempDir()
			if out, code := runCmd(t, "citysense-collector", "agent", "add", "gw-042", "--data-dir", credDir); code != 0 {
				t.Fatalf("agent add: exit %d\n%s", code, out)
			}
			creds, err := os.ReadFile(filepath.Join(credDir, "agents", "gw-042.creds"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "tmp/gw-042.creds"), creds, 0o600); err != nil {
				t.Fatal(err)
			}

			install := func(args ...string) (string, int) {
				return edgeChroot(t, root, append([]string{"sh", "/opt/dist/install.sh", "--from", "/opt/dist", "--method", method}, args...)...)
			}
			flags := []string{"--collector", "nats://10.20.0.5:4222,nats://10.20.0.6:4222", "--id", "gw-042", "--creds", "/tmp/gw-042.creds"}
			out1, code := install(flags...)
			if code != 0 {
				t.Fatalf("first run: exit %d\n%s", code, out1)
			}
			first := edgeState(t, root)
			out2, code := install(flags...)
			if code != 0 {
				t.Fatalf("second run: exit %d\n%s", code, out2)
			}
			if second := edgeState(t, root); second != first {
				t.Fatalf("the second run changed the installation:\n--- after the first\n%s\n--- after the second\n%s", first, second)
			}
			if !strings.Contains(out2, "nothing to change") {
				t.Fatalf("second run says:\n%s", out2)
			}

			// One installation, configured as asked.
			cfg, err := os.ReadFile(filepath.Join(root, "etc/citysense/agent.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"\n  id: gw-042\n", "\n  data_dir: /var/lib/citysense/agent\n", "\n    url: \"nats://10.20.0.5:4222,nats://10.20.0.6:4222\"\n", "\n    creds: /etc/citysense/agent.creds\n", "\n  - type: http\n"} {
				if !strings.Contains(string(cfg), want) {
					t.Fatalf("agent.yaml lacks %q:\n%s", want, cfg)
				}
			}
			if strings.Contains(string(cfg), "type: sim") {
				t.Fatalf("agent.yaml still runs the simulator:\n%s", cfg)
			}
			gotCreds, err := os.ReadFile(filepath.Join(root, "etc/citysense/agent.creds"))
			if err != nil || string(gotCreds) != string(creds) {
				t.Fatalf("agent.creds differs from the file given (%v)", err)
			}
			if !strings.Contains(first, "etc/citysense/agent.creds -rw-r----- 0:") {
				t.Fatalf("agent.creds is not 0640 root:citysense:\n%s", first)
			}
			// The service user can read everything it needs: the check its unit
			// runs first passes as that user.
			edgeChrootOK(t, root, "chroot", "--userspec=citysense:citysense", "/", "/usr/bin/citysense-agent", "check", "-c", "/etc/citysense/agent.yaml")
			for _, db := range []string{"etc/passwd", "etc/group"} {
				if n := strings.Count(first, db+" citysense:"); n != 1 {
					t.Fatalf("%d citysense entries in /%s, want 1", n, db)
				}
			}
			if !edgeExists(root, "etc/systemd/system/multi-user.target.wants/citysense-agent.service") {
				t.Fatal("the service is not enabled")
			}
			if edgeExists(root, "usr/sbin/policy-rc.d") || edgeExists(root, "etc/citysense/agent.yaml.orig") {
				t.Fatalf("install.sh left policy-rc.d or a backup of the package's default:\n%s", first)
			}
			if method == "deb" {
				if v := strings.TrimSpace(edgeChrootOK(t, root, "dpkg-query", "-W", "-f=${Version} ${db:Status-Abbrev}", "citysense-agent")); v != "1.0.0 ii" {
					t.Fatalf("dpkg: citysense-agent %q", v)
				}
				if strings.Contains(first, "etc/systemd/system/citysense-agent.service ") {
					t.Fatal("the deb install also wrote a unit to /etc/systemd/system")
				}
			} else {
				b, _ := os.ReadFile(filepath.Join(root, "usr/bin/citysense-agent"))
				want, _ := os.ReadFile(agentBin)
				if string(b) != string(want) || !strings.Contains(first, "etc/systemd/system/citysense-agent.service -rw-r--r--") {
					t.Fatalf("binary install: /usr/bin/citysense-agent or the unit is not in place:\n%s", first)
				}
				if _, code := edgeChroot(t, root, "dpkg-query", "-W", "citysense-agent"); code == 0 {
					t.Fatal("the binary install registered a package")
				}
			}

			// A hand-edited inputs block survives a re-run with a new id.
			edited := strings.Replace(string(cfg), "    listen: 127.0.0.1:8186\n", "    listen: 127.0.0.1:8187\n", 1)
			if err := os.WriteFile(filepath.Join(root, "etc/citysense/agent.yaml"), []byte(edited), 0o644); err != nil {
				t.Fatal(err)
			}
			flags[3] = "gw-043"
			if out, code := install(flags...); code != 0 || !strings.Contains(out, "configuration written") {
				t.Fatalf("run with a new id: exit %d\n%s", code, out)
			}
			cfg3, _ := os.ReadFile(filepath.Join(root, "etc/citysense/agent.yaml"))
			if !strings.Contains(string(cfg3), "\n  id: gw-043\n") || !strings.Contains(string(cfg3), "listen: 127.0.0.1:8187\n") || strings.Contains(string(cfg3), "gw-042") {
				t.Fatalf("after the new id:\n%s", cfg3)
			}

			// Bad flags: a clear error, and nothing changes.
			before := edgeState(t, root)
			for _, bad := range [][]string{
				{"--collector", "nats://10.20.0.5:4222", "--id", "gw 17"},
				{"--collector", "http://10.20.0.5:4222", "--id", "gw-17"},
				{"--id", "gw-17"},
				{"--collector", "nats://10.20.0.5:4222", "--id", "gw-17", "--creds", "/nonexistent"},
				{"--collector", "nats://10.20.0.5:4222", "--id", "gw-17", "--arch", "sparc"},
			} {
				out, code := install(bad...)
				if code == 0 || !strings.Contains(out, "install.sh: ") {
					t.Fatalf("install.sh %v: exit %d, want an error:\n%s", bad, code, out)
				}
			}
			if after := edgeState(t, root); after != before {
				t.Fatalf("a refused run changed the installation:\n%s\n---\n%s", before, after)
			}
			t.Logf("%s: two runs, one installation (%d files and entries); new id applied, bad flags refused", method, strings.Count(first, "\n")+1)
		})
	}
}
