package sta

import (
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocs_examples: every GET example of docs/sensorthings.md answers
// 200 on the fixture, so the guide stays in step with the code.
func TestDocs_examples(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/sensorthings.md")
	if err != nil {
		t.Fatal(err)
	}
	h := newHandler(fixture(t), nil)
	re := regexp.MustCompile(`(?m)^GET (/sta/v1\.1/\S*(?: [^ \n][^\n]*?)?)(?:\s{2,}.*)?$`)
	n := 0
	for _, m := range re.FindAllStringSubmatch(string(doc), -1) {
		target := m[1]
		path, query, _ := strings.Cut(target, "?")
		var parts []string
		for _, p := range strings.Split(query, "&") {
			if p == "" {
				continue
			}
			k, v, _ := strings.Cut(p, "=")
			parts = append(parts, k+"="+url.QueryEscape(v))
		}
		u := strings.NewReplacer("'", "%27", " ", "%20").Replace(path)
		if len(parts) > 0 {
			u += "?" + strings.Join(parts, "&")
		}
		code, _, body := get(t, h, u)
		if code != 200 {
			t.Errorf("docs example %s: %d %s", target, code, body)
		}
		n++
	}
	if n < 30 {
		t.Fatalf("found %d examples in docs/sensorthings.md, want 30 or more", n)
	}
	t.Logf("%d documented examples answer 200", n)
}
