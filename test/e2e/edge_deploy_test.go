package e2e

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The container images, the compose demo and the Kubernetes manifests cannot
// run here (no container runtime). These tests check what can be checked
// without one: every file parses, every reference between them resolves, the
// images are non-root and from scratch, and the configurations they carry
// pass the programs' own check (less the cluster: block, which belongs to
// the clustering work).

// edgeYAMLDocs decodes every document of a YAML file.
func edgeYAMLDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML document", path)
	}
	return docs
}

// edgeGet walks nested maps and lists: edgeGet(d, "spec", "template", 0).
func edgeGet(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func edgeStr(v any, path ...any) string {
	s, _ := edgeGet(v, path...).(string)
	return s
}

// edgeCheckConfig runs `PROG check` on a configuration with env set, after
// dropping its top-level cluster: block.
func edgeCheckConfig(t *testing.T, prog, name, content string, env ...string) {
	t.Helper()
	p := writeFile(t, name, content)
	cmd := exec.Command(filepath.Join(binDir, prog), "check", "-c", p)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s check of %s: %v\n%s", prog, name, err, out)
	}
}

func TestEdge_Dockerfiles(t *testing.T) {
	root := edgeRoot(t)
	// The module's directories the programs import: the build context must
	// let every one of them in.
	out := edgeRun(t, root, nil, "go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", "./agent/cmd/citysense-agent", "./collector/cmd/citysense-collector")
	tops := map[string]bool{}
	for _, d := range strings.Fields(out) {
		rel, err := filepath.Rel(root, d)
		if err != nil {
			t.Fatal(err)
		}
		tops[strings.Split(rel, string(filepath.Separator))[0]] = true
	}
	for _, prog := range []string{"agent", "collector"} {
		df := filepath.Join(root, "deploy/docker", prog+".Dockerfile")
		b, err := os.ReadFile(df)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		stages := regexp.MustCompile(`(?m)^FROM[ \t]+(.+)$`).FindAllStringSubmatch(text, -1)
		if len(stages) < 2 {
			t.Fatalf("%s: want a build stage and a final stage, found %d FROM lines", df, len(stages))
		}
		if final := stages[len(stages)-1][1]; final != "scratch" && !strings.HasPrefix(final, "gcr.io/distroless/") {
			t.Fatalf("%s: final stage FROM %s, want scratch or distroless", df, final)
		}
		if !strings.Contains(stages[0][1], "--platform=$BUILDPLATFORM") {
			t.Fatalf("%s: the build stage must run on $BUILDPLATFORM and cross-compile (multi-arch)", df)
		}
		finalPart := text[strings.LastIndex(text, "\nFROM "):]
		if m := regexp.MustCompile(`(?m)^USER\s+(\d+):(\d+)$`).FindStringSubmatch(finalPart); m == nil || m[1] == "0" {
			t.Fatalf("%s: the final stage must set a numeric non-root USER", df)
		}
		for _, want := range []string{"CGO_ENABLED=0", "GOARCH=$TARGETARCH", "GOARM=${TARGETVARIANT#v}", "./" + prog + "/cmd/citysense-" + prog, `ENTRYPOINT ["/usr/bin/citysense-` + prog + `"]`, "configs/" + prog + ".yaml"} {
			if !strings.Contains(text, want) {
				t.Fatalf("%s lacks %q", df, want)
			}
		}
		if _, err := os.Stat(filepath.Join(root, "configs", prog+".yaml")); err != nil {
			t.Fatal(err)
		}
		ign, err := os.ReadFile(df + ".dockerignore")
		if err != nil {
			t.Fatal(err)
		}
		for top := range tops {
			if !strings.Contains(string(ign), "\n!"+top+"/\n") {
				t.Fatalf("%s.dockerignore keeps %s/ out of the build context, and the programs import it", df, top)
			}
		}
	}
}

func TestEdge_ComposeDemo(t *testing.T) {
	root := edgeRoot(t)
	dir := filepath.Join(root, "deploy")
	c := edgeYAMLDocs(t, filepath.Join(dir, "compose.yaml"))[0]
	services, _ := c["services"].(map[string]any)
	volumes, _ := c["volumes"].(map[string]any)
	collectors, agents := 0, 0
	for name, s := range services {
		switch edgeStr(s, "image") {
		case "citysense-collector:dev":
			collectors++
		case "citysense-agent:dev":
			agents++
		default:
			t.Fatalf("service %s: image %q", name, edgeStr(s, "image"))
		}
		ctx := filepath.Join(dir, edgeStr(s, "build", "context"))
		if _, err := os.Stat(filepath.Join(ctx, edgeStr(s, "build", "dockerfile"))); err != nil {
			t.Fatalf("service %s: dockerfile: %v", name, err)
		}
		deps, _ := edgeGet(s, "depends_on").([]any)
		for _, d := range deps {
			if _, ok := services[d.(string)]; !ok {
				t.Fatalf("service %s depends on unknown service %v", name, d)
			}
		}
		if nm := edgeStr(s, "network_mode"); strings.HasPrefix(nm, "service:") {
			if _, ok := services[strings.TrimPrefix(nm, "service:")]; !ok {
				t.Fatalf("service %s: network_mode %s names no service", name, nm)
			}
		}
		vols, _ := edgeGet(s, "volumes").([]any)
		for _, v := range vols {
			src := strings.Split(v.(string), ":")[0]
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(dir, src)); err != nil {
					t.Fatalf("service %s mounts %s: %v", name, src, err)
				}
			} else if _, ok := volumes[src]; !ok {
				t.Fatalf("service %s uses undeclared volume %s", name, src)
			}
		}
		env, _ := edgeGet(s, "environment").(map[string]any)
		var envs []string
		for k, v := range env {
			envs = append(envs, k+"="+v.(string))
		}
		// Each service's configuration passes the program's check with the
		// service's environment.
		prog := strings.TrimSuffix(strings.TrimPrefix(edgeStr(s, "image"), "citysense-"), ":dev")
		cfg, err := os.ReadFile(filepath.Join(dir, "compose", prog+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		edgeCheckConfig(t, "citysense-"+prog, name+".yaml", string(cfg), envs...)
	}
	if collectors != 3 || agents < 1 {
		t.Fatalf("compose demo: %d collectors and %d agents, want 3 and at least 1", collectors, agents)
	}
	t.Logf("compose: %d collectors, %d agents; every reference resolves and every configuration checks", collectors, agents)
}

func TestEdge_KubernetesManifests(t *testing.T) {
	dir := filepath.Join(edgeRoot(t), "deploy/k8s")
	kust := edgeYAMLDocs(t, filepath.Join(dir, "kustomization.yaml"))[0]
	byKind := map[string]map[string]any{} // "Kind/name"
	res, _ := kust["resources"].([]any)
	for _, r := range res {
		for _, d := range edgeYAMLDocs(t, filepath.Join(dir, r.(string))) {
			kind, name := edgeStr(d, "kind"), edgeStr(d, "metadata", "name")
			if edgeStr(d, "apiVersion") == "" || kind == "" || name == "" {
				t.Fatalf("%s: a document without apiVersion, kind or metadata.name", r)
			}
			byKind[kind+"/"+name] = d
		}
	}
	var sts map[string]any
	for k, d := range byKind {
		if strings.HasPrefix(k, "StatefulSet/") {
			sts = d
		}
	}
	if sts == nil {
		t.Fatal("no StatefulSet for the collector")
	}
	if n, _ := edgeGet(sts, "spec", "replicas").(int); n != 3 {
		t.Fatalf("StatefulSet replicas = %v, want 3", edgeGet(sts, "spec", "replicas"))
	}
	peers := byKind["Service/"+edgeStr(sts, "spec", "serviceName")]
	if peers == nil || edgeStr(peers, "spec", "clusterIP") != "None" {
		t.Fatalf("the StatefulSet's serviceName %q is not a headless Service", edgeStr(sts, "spec", "serviceName"))
	}
	pod := edgeGet(sts, "spec", "template")
	labels, _ := edgeGet(pod, "metadata", "labels").(map[string]any)
	matches := func(sel any) bool {
		m, _ := sel.(map[string]any)
		for k, v := range m {
			if labels[k] != v {
				return false
			}
		}
		return len(m) > 0
	}
	if !matches(edgeGet(sts, "spec", "selector", "matchLabels")) {
		t.Fatal("the StatefulSet's selector does not match its pods")
	}
	if edgeGet(pod, "spec", "securityContext", "runAsNonRoot") != true {
		t.Fatal("pods must run as non-root")
	}
	ctr := edgeGet(pod, "spec", "containers", 0)
	portNames := map[string]bool{}
	ports, _ := edgeGet(ctr, "ports").([]any)
	for _, p := range ports {
		portNames[edgeStr(p, "name")] = true
	}
	for _, probe := range []string{"readinessProbe", "livenessProbe"} {
		if port := edgeStr(ctr, probe, "httpGet", "port"); !portNames[port] {
			t.Fatalf("%s uses port %q, not a container port", probe, port)
		}
	}
	if edgeGet(ctr, "securityContext", "readOnlyRootFilesystem") != true || edgeGet(ctr, "securityContext", "allowPrivilegeEscalation") != false {
		t.Fatal("the container must have a read-only root and no privilege escalation")
	}
	for k, d := range byKind {
		switch {
		case strings.HasPrefix(k, "Service/"):
			if !matches(edgeGet(d, "spec", "selector")) {
				t.Fatalf("%s selects no collector pod", k)
			}
			sp, _ := edgeGet(d, "spec", "ports").([]any)
			for _, p := range sp {
				if tp := edgeStr(p, "targetPort"); tp != "" && !portNames[tp] {
					t.Fatalf("%s targets port %q, not a container port", k, tp)
				}
			}
		case strings.HasPrefix(k, "PodDisruptionBudget/"):
			if !matches(edgeGet(d, "spec", "selector", "matchLabels")) {
				t.Fatalf("%s selects no collector pod", k)
			}
		}
	}
	// The configuration the pods mount exists and passes the collector's check.
	vols, _ := edgeGet(pod, "spec", "volumes").([]any)
	checked := 0
	for _, v := range vols {
		cm := edgeStr(v, "configMap", "name")
		if cm == "" {
			continue
		}
		d := byKind["ConfigMap/"+cm]
		if d == nil {
			t.Fatalf("volume %s uses ConfigMap %s, which the manifests do not define", edgeStr(v, "name"), cm)
		}
		cfg := edgeStr(d, "data", "collector.yaml")
		if cfg == "" {
			t.Fatalf("ConfigMap %s has no collector.yaml", cm)
		}
		edgeCheckConfig(t, "citysense-collector", "k8s-collector.yaml", cfg, "POD_NAME=c-0", "POD_IP=10.0.0.7", "CITYSENSE_CLUSTER_KEY=AAECAwQFBgcICQoLDA0ODw==")
		checked++
	}
	if checked != 1 {
		t.Fatalf("%d configuration volumes checked, want 1", checked)
	}
	t.Logf("k8s: %d objects; references, selectors, ports and the collector configuration check out", len(byKind))
}
