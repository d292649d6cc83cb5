package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The package tests build the .deb files with `make deb`, check them with
// lintian and systemd-analyze, and install, upgrade, remove and purge them
// in a Debian root made by debootstrap, without systemd running. The root
// is cached as a tarball in the temporary directory, one per day.

// edgeTool returns the path of a tool from a Debian package; a missing one
// fails the test under CI=true and skips it otherwise (needPeer).
func edgeTool(t *testing.T, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	// debootstrap and friends live in /usr/sbin, which a user's PATH may lack.
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); edgeIsExec(p) {
			return p
		}
	}
	return needPeer(t, name, pkg)
}

func edgeIsExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// edgeRun runs a command and fails the test with its output when it fails.
func edgeRun(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, edgeTail(out))
	}
	return string(out)
}

func edgeTail(b []byte) string {
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// edgeMakeDeb runs `make deb` for the given architectures and version into
// dir and returns the packages' paths by program and architecture
// ("agent/amd64"). It does not touch t, so it may run on another goroutine.
func edgeMakeDeb(root, dir, version string, arches ...string) (map[string]string, error) {
	cmd := exec.Command("make", "--no-print-directory", "deb",
		"DEB_ARCHES="+strings.Join(arches, " "), "DEB_VERSION="+version, "DIST="+dir)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("make deb DEB_VERSION=%s: %v\n%s", version, err, edgeTail(out))
	}
	debs := map[string]string{}
	for _, a := range arches {
		for _, prog := range []string{"agent", "collector"} {
			p := filepath.Join(dir, "deb", fmt.Sprintf("citysense-%s_%s_%s.deb", prog, version, a))
			if _, err := os.Stat(p); err != nil {
				return nil, fmt.Errorf("make deb did not write %s: %w", p, err)
			}
			debs[prog+"/"+a] = p
		}
	}
	return debs, nil
}

// edgeAptSource returns the first Debian archive apt on this machine uses
// (URI and base suite), read from its sources lists in both formats.
func edgeAptSource(t *testing.T) (uri, suite string) {
	t.Helper()
	var files []string
	if _, err := os.Stat("/etc/apt/sources.list"); err == nil {
		files = append(files, "/etc/apt/sources.list")
	}
	for _, pat := range []string{"/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"} {
		m, _ := filepath.Glob(pat)
		files = append(files, m...)
	}
	base := func(s string) bool { return s != "" && !strings.Contains(s, "-") && !strings.Contains(s, "/") }
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if strings.HasSuffix(f, ".sources") {
			// deb822: paragraphs of "Key: value" separated by blank lines.
			for _, para := range strings.Split(string(b), "\n\n") {
				kv := map[string]string{}
				for _, line := range strings.Split(para, "\n") {
					if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(strings.TrimSpace(line), "#") {
						kv[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
					}
				}
				if !strings.Contains(" "+kv["types"]+" ", " deb ") || strings.EqualFold(kv["enabled"], "no") {
					continue
				}
				uris, suites := strings.Fields(kv["uris"]), strings.Fields(kv["suites"])
				for _, s := range suites {
					if len(uris) > 0 && base(s) {
						return uris[0], s
					}
				}
			}
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 || fields[0] != "deb" {
				continue
			}
			fields = fields[1:]
			if strings.HasPrefix(fields[0], "[") { // [arch=amd64 signed-by=…]
				for len(fields) > 0 && !strings.HasSuffix(fields[0], "]") {
					fields = fields[1:]
				}
				fields = fields[1:]
			}
			if len(fields) >= 2 && base(fields[1]) {
				return fields[0], fields[1]
			}
		}
	}
	t.Fatalf("no Debian archive found in apt's sources (%s)", strings.Join(files, ", "))
	return "", ""
}

// edgeDebianRoot returns a fresh Debian root (debootstrap's minbase, with
// procps for /bin/kill, which the units' ExecReload names; no systemd, as in
// an image build) in a test directory. The debootstrap
// result is cached as a tarball under the temporary directory per suite,
// architecture and day.
func edgeDebianRoot(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the package tests need root (chroot, dpkg)")
		}
		t.Skip("the package tests need root (chroot, dpkg)")
	}
	debootstrap := edgeTool(t, "debootstrap", "debootstrap")
	uri, suite := edgeAptSource(t)
	cache := filepath.Join(os.TempDir(), fmt.Sprintf("citysense-edge-%s-%s-minbase-%s.tar", suite, runtime.GOARCH, time.Now().UTC().Format("20060102")))
	if _, err := os.Stat(cache); err != nil {
		build := filepath.Join(os.TempDir(), fmt.Sprintf("citysense-edge-root-%d", os.Getpid()))
		_ = os.RemoveAll(build)
		defer os.RemoveAll(build)
		began := time.Now()
		edgeRun(t, "", nil, debootstrap, "--variant=minbase", "--include=procps", suite, build, uri)
		edgeRun(t, "", nil, "tar", "-C", build, "-cf", cache+".tmp", ".")
		if err := os.Rename(cache+".tmp", cache); err != nil {
			t.Fatal(err)
		}
		t.Logf("debootstrap %s from apt's archive: %s; cached in %s", suite, time.Since(began).Round(time.Second), cache)
	}
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	edgeRun(t, "", nil, "tar", "-C", root, "-xf", cache)
	return root
}

// edgeChroot runs a command in root and returns its combined output and
// exit code.
func edgeChroot(t *testing.T, root string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("chroot", append([]string{root}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LANG=C.UTF-8"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("chroot %v: %v", args, err)
		}
		return string(out), ee.ExitCode()
	}
	return string(out), 0
}

// edgeChrootOK is edgeChroot that fails the test on a non-zero exit.
func edgeChrootOK(t *testing.T, root string, args ...string) string {
	t.Helper()
	out, code := edgeChroot(t, root, args...)
	if code != 0 {
		t.Fatalf("in the Debian root: %s: exit %d\n%s", strings.Join(args, " "), code, edgeTail([]byte(out)))
	}
	return out
}

func edgeExists(root, p string) bool {
	_, err := os.Lstat(filepath.Join(root, p))
	return err == nil
}

// TestEdge_DebPackages builds both programs' packages and checks them:
// lintian reports no error, systemd-analyze accepts the installed units,
// and install, upgrade (N to N+1), remove and purge in a Debian root do
// what Debian's policy and the issue ask.
func TestEdge_DebPackages(t *testing.T) {
	lintian := edgeTool(t, "lintian", "lintian")
	analyze := edgeTool(t, "systemd-analyze", "systemd")
	edgeTool(t, "dpkg-deb", "dpkg")
	edgeTool(t, "chroot", "coreutils")
	root := edgeDebianRoot(t)

	const v1, v2 = "0.9.0", "0.9.1"
	src := edgeRoot(t)
	debs1, err := edgeMakeDeb(src, t.TempDir(), v1, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	// Lintian (CPU) and the N+1 build run while the root installs N (disk).
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	type lintResult struct {
		out []byte
		err error
	}
	lint := make(chan lintResult, 1)
	go func() {
		out, err := exec.CommandContext(ctx, lintian, "--tag-display-limit", "0", "--fail-on", "error", debs1["agent/amd64"], debs1["collector/amd64"]).CombinedOutput()
		lint <- lintResult{out, err}
	}()
	type buildResult struct {
		debs map[string]string
		err  error
	}
	nextBuild := make(chan buildResult, 1)
	dist2 := t.TempDir()
	go func() {
		debs, err := edgeMakeDeb(src, dist2, v2, "amd64")
		nextBuild <- buildResult{debs, err}
	}()
	// The packaged default configuration is what the package ships and what
	// the unit's ExecStartPre checks.
	wantCfg := map[string][]byte{}
	for _, prog := range []string{"agent", "collector"} {
		x := t.TempDir()
		edgeRun(t, "", nil, "dpkg-deb", "-x", debs1[prog+"/amd64"], x)
		b, err := os.ReadFile(filepath.Join(x, "etc/citysense", prog+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "  data_dir: /var/lib/citysense/"+prog+"\n") {
			t.Fatalf("packaged %s.yaml does not keep its data in /var/lib/citysense/%s", prog, prog)
		}
		wantCfg[prog] = b
	}

	copyIn := func(deb string) string {
		b, err := os.ReadFile(deb)
		if err != nil {
			t.Fatal(err)
		}
		in := "/tmp/" + filepath.Base(deb)
		if err := os.WriteFile(filepath.Join(root, in), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return in
	}
	version := func(prog string) string {
		out := edgeChrootOK(t, root, "dpkg-query", "-W", "-f=${Version} ${db:Status-Abbrev}", "citysense-"+prog)
		return strings.TrimSpace(out)
	}

	// The root has no systemd; systemd-analyze (the host's) needs its own
	// unit set (sysinit.target, …) to resolve the units' dependencies, so
	// that is copied into the root first, without overwriting anything.
	hostUnits, err := filepath.Glob("/lib/systemd/system/*")
	if err != nil || len(hostUnits) == 0 {
		t.Fatalf("systemd's units are not in /lib/systemd/system (%v): is the systemd package installed?", err)
	}
	if err := os.MkdirAll(filepath.Join(root, "lib/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
	edgeRun(t, "", nil, "cp", append(append([]string{"-a", "-n"}, hostUnits...), filepath.Join(root, "lib/systemd/system"))...)

	// ---- install N
	edgeChrootOK(t, root, "dpkg", "--force-unsafe-io", "-i", copyIn(debs1["agent/amd64"]), copyIn(debs1["collector/amd64"]))
	var uid int
	for _, prog := range []string{"agent", "collector"} {
		if v := version(prog); v != v1+" ii" {
			t.Fatalf("citysense-%s after install: %q, want %q", prog, v, v1+" ii")
		}
		if out := edgeChrootOK(t, root, "citysense-"+prog, "version"); !strings.HasPrefix(out, "citysense-"+prog+" "+v1+"\n") {
			t.Fatalf("installed citysense-%s version says %q", prog, out)
		}
		got, err := os.ReadFile(filepath.Join(root, "etc/citysense", prog+".yaml"))
		if err != nil || string(got) != string(wantCfg[prog]) {
			t.Fatalf("/etc/citysense/%s.yaml after install differs from the package's (%v)", prog, err)
		}
		cf := edgeChrootOK(t, root, "dpkg-query", "-W", "-f=${Conffiles}", "citysense-"+prog)
		if !strings.Contains(cf, "/etc/citysense/"+prog+".yaml ") {
			t.Fatalf("citysense-%s conffiles: %q", prog, cf)
		}
		if !edgeExists(root, "etc/systemd/system/multi-user.target.wants/citysense-"+prog+".service") {
			t.Fatalf("citysense-%s.service is not enabled after install", prog)
		}
		st, err := os.Stat(filepath.Join(root, "var/lib/citysense", prog))
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if st.Mode().Perm() != 0o750 || !st.IsDir() {
			t.Fatalf("/var/lib/citysense/%s: mode %v", prog, st.Mode())
		}
		uid = int(sys.Uid)
		// ExecStartPre's check passes on the packaged configuration.
		edgeChrootOK(t, root, "citysense-"+prog, "check", "-c", "/etc/citysense/"+prog+".yaml")
		// systemd-analyze accepts the unit as installed, with the binaries
		// and /bin/kill it names found in the Debian root.
		out, err := exec.Command(analyze, "verify", "--root="+root, "/lib/systemd/system/citysense-"+prog+".service").CombinedOutput()
		if err != nil {
			t.Fatalf("systemd-analyze verify citysense-%s.service: %v\n%s", prog, err, out)
		}
	}
	pw := strings.Split(strings.TrimSpace(edgeChrootOK(t, root, "getent", "passwd", "citysense")), ":")
	if len(pw) != 7 || pw[2] != strconv.Itoa(uid) || pw[5] != "/var/lib/citysense" {
		t.Fatalf("user citysense: %q, want uid %d (the data dir's owner) and home /var/lib/citysense", pw, uid)
	}
	if n, _ := strconv.Atoi(pw[2]); n >= 1000 || n == 0 {
		t.Fatalf("user citysense has uid %d, want a system uid", n)
	}

	// The agent, as the service user, fills its buffer with the packaged
	// configuration; nothing can receive it here, so it stays buffered.
	httpA := freeAddr(t)
	agent := exec.Command("chroot", "--userspec=citysense:citysense", root, "/usr/bin/citysense-agent", "run",
		"-c", "/etc/citysense/agent.yaml", "--http", httpA, "--log-format", "json")
	agent.Env = []string{"PATH=/usr/bin:/bin"}
	logf, err := os.Create(filepath.Join(t.TempDir(), "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	agent.Stdout, agent.Stderr = logf, logf
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: "citysense-agent (chroot)", cmd: agent, log: logf.Name(), done: make(chan error, 1)}
	go func() { p.done <- agent.Wait() }()
	t.Cleanup(func() {
		if agent.ProcessState == nil {
			_ = agent.Process.Kill()
			<-p.done
		}
	})
	agWaitStatus(t, httpA, "the chrooted agent to buffer points", 60*time.Second, func(s agStatus) bool { return s.PointsBuffered >= 50 })
	p.stop(t, 30*time.Second)
	bufferStats := func() (points, batches int64, next uint64) {
		out := edgeChrootOK(t, root, "citysense-agent", "buffer", "stats", "--data-dir", "/var/lib/citysense/agent", "--json")
		var st struct {
			Points  int64  `json:"points"`
			Batches int64  `json:"batches"`
			NextSeq uint64 `json:"next_seq"`
		}
		if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &st); err != nil {
			t.Fatalf("buffer stats: %v\n%s", err, out)
		}
		return st.Points, st.Batches, st.NextSeq
	}
	points, batches, next := bufferStats()
	if points < 50 || batches < 1 {
		t.Fatalf("buffer before the upgrade: %d points in %d batches, want ≥ 50", points, batches)
	}

	// An installer edits the configuration on site.
	cfgPath := filepath.Join(root, "etc/citysense/agent.yaml")
	edited := append(append([]byte{}, wantCfg["agent"]...), "# edited on site: cabinet 17\n"...)
	if err := os.WriteFile(cfgPath, edited, 0o644); err != nil {
		t.Fatal(err)
	}

	// ---- upgrade to N+1
	nb := <-nextBuild
	if nb.err != nil {
		t.Fatal(nb.err)
	}
	debs2 := nb.debs
	edgeChrootOK(t, root, "dpkg", "--force-unsafe-io", "-i", copyIn(debs2["agent/amd64"]), copyIn(debs2["collector/amd64"]))
	for _, prog := range []string{"agent", "collector"} {
		if v := version(prog); v != v2+" ii" {
			t.Fatalf("citysense-%s after upgrade: %q, want %q", prog, v, v2+" ii")
		}
		if out := edgeChrootOK(t, root, "citysense-"+prog, "version"); !strings.HasPrefix(out, "citysense-"+prog+" "+v2+"\n") {
			t.Fatalf("upgraded citysense-%s version says %q", prog, out)
		}
		if !edgeExists(root, "etc/systemd/system/multi-user.target.wants/citysense-"+prog+".service") {
			t.Fatalf("citysense-%s.service is no longer enabled after the upgrade", prog)
		}
		for _, leftover := range []string{".dpkg-dist", ".dpkg-new", ".dpkg-old"} {
			if edgeExists(root, "etc/citysense/"+prog+".yaml"+leftover) {
				t.Fatalf("the upgrade left /etc/citysense/%s.yaml%s", prog, leftover)
			}
		}
	}
	if got, _ := os.ReadFile(cfgPath); string(got) != string(edited) {
		t.Fatalf("the upgrade did not keep the edited /etc/citysense/agent.yaml")
	}
	if p2, b2, n2 := bufferStats(); p2 != points || b2 != batches || n2 != next {
		t.Fatalf("buffer after the upgrade: %d points, %d batches, next %d; before: %d, %d, %d", p2, b2, n2, points, batches, next)
	}
	if pw2 := strings.Split(strings.TrimSpace(edgeChrootOK(t, root, "getent", "passwd", "citysense")), ":"); pw2[2] != pw[2] {
		t.Fatalf("the upgrade changed the user: %q, was %q", pw2, pw)
	}

	// ---- remove the agent: configuration and data stay
	edgeChrootOK(t, root, "dpkg", "--force-unsafe-io", "-r", "citysense-agent")
	if v := version("agent"); v != v2+" rc" {
		t.Fatalf("citysense-agent after remove: %q, want %q", v, v2+" rc")
	}
	if edgeExists(root, "usr/bin/citysense-agent") || !edgeExists(root, "etc/citysense/agent.yaml") || !edgeExists(root, "var/lib/citysense/agent") {
		t.Fatal("remove must delete the binary and keep the configuration and the data")
	}

	// ---- purge the agent: its configuration, data and enablement go; the
	// user stays for the collector.
	edgeChrootOK(t, root, "dpkg", "--force-unsafe-io", "--purge", "citysense-agent")
	for _, gone := range []string{"etc/citysense/agent.yaml", "var/lib/citysense/agent", "etc/systemd/system/multi-user.target.wants/citysense-agent.service", "lib/systemd/system/citysense-agent.service"} {
		if edgeExists(root, gone) {
			t.Fatalf("purge left /%s", gone)
		}
	}
	if _, code := edgeChroot(t, root, "getent", "passwd", "citysense"); code != 0 {
		t.Fatal("purging the agent removed the user the collector still runs as")
	}
	if !edgeExists(root, "etc/citysense/collector.yaml") || !edgeExists(root, "var/lib/citysense/collector") {
		t.Fatal("purging the agent touched the collector's files")
	}

	// ---- purge the collector: nothing of CitySense is left.
	edgeChrootOK(t, root, "dpkg", "--force-unsafe-io", "--purge", "citysense-collector")
	for _, gone := range []string{"etc/citysense", "var/lib/citysense", "usr/bin/citysense-collector", "etc/systemd/system/multi-user.target.wants/citysense-collector.service"} {
		if edgeExists(root, gone) {
			t.Fatalf("purge left /%s", gone)
		}
	}
	for _, db := range []string{"passwd", "group"} {
		if out, code := edgeChroot(t, root, "getent", db, "citysense"); code == 0 {
			t.Fatalf("purging the last package left %s entry %q", db, out)
		}
	}
	for _, prog := range []string{"agent", "collector"} {
		// A purged package is unknown to dpkg, or known as not installed.
		if out, code := edgeChroot(t, root, "dpkg-query", "-W", "-f=${db:Status-Abbrev}", "citysense-"+prog); code == 0 && !strings.HasPrefix(out, "un") && !strings.HasPrefix(out, "pn") {
			t.Fatalf("dpkg-query citysense-%s after purge: %q", prog, out)
		}
	}
	// Lintian has been running meanwhile.
	t.Run("lintian", func(t *testing.T) {
		r := <-lint
		var errs, warns []string
		for _, line := range strings.Split(string(r.out), "\n") {
			switch {
			case strings.HasPrefix(line, "E: "):
				errs = append(errs, line)
			case strings.HasPrefix(line, "W: "):
				warns = append(warns, line)
			}
		}
		if r.err != nil || len(errs) > 0 {
			t.Fatalf("lintian: %v, %d errors:\n%s", r.err, len(errs), r.out)
		}
		t.Logf("lintian: 0 errors, %d warnings %q", len(warns), warns)
	})
	t.Logf("install %s, upgrade to %s keeping %d buffered points in %d batches and the edited conffile, remove, purge: clean", v1, v2, points, batches)
}
