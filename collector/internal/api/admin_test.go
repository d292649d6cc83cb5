package api

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/citysense/citysense/collector/internal/auth"
)

func (f *writeFixture) admin_(method, target, secret, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://collector"+target, strings.NewReader(body))
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	rec := httptest.NewRecorder()
	f.api.ServeHTTP(rec, req)
	return rec
}

func TestAPI_admin_auth(t *testing.T) {
	f := newWriteFixture(t, WriteLimits{})
	tests := []struct {
		name, method, target, auth string
		code                       int
		body                       string
	}{
		{"no token", "GET", "/admin/v1/agents", "", 401, `{"error":"a valid admin token is required: Authorization: Bearer TOKEN"}`},
		{"wrong token", "GET", "/admin/v1/tokens", "Bearer cs_nope", 401, `{"error":"a valid admin token is required: Authorization: Bearer TOKEN"}`},
		{"token scheme is not bearer", "GET", "/admin/v1/tokens", "Token " + f.admin, 401, `{"error":"a valid admin token is required: Authorization: Bearer TOKEN"}`},
		{"write token", "GET", "/admin/v1/agents", "Bearer " + f.writer, 403, `{"error":"token telegraf is not an admin token"}`},
		{"write token may not enroll", "POST", "/admin/v1/agents", "Bearer " + f.writer, 403, `{"error":"token telegraf is not an admin token"}`},
		{"write token may not revoke", "DELETE", "/admin/v1/tokens/ops", "Bearer " + f.writer, 403, `{"error":"token telegraf is not an admin token"}`},
		{"admin token", "GET", "/admin/v1/agents", "Bearer " + f.admin, 200, `{"agents":[]}`},
		{"unknown admin path", "GET", "/admin/v1/nope", "Bearer " + f.admin, 404, `{"error":"no such endpoint: /admin/v1/nope"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "http://collector"+tt.target, strings.NewReader(`{"id":"gw-x"}`))
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			f.api.ServeHTTP(rec, req)
			if rec.Code != tt.code || strings.TrimSpace(rec.Body.String()) != tt.body {
				t.Errorf("got %d %s, want %d %s", rec.Code, rec.Body, tt.code, tt.body)
			}
			if tt.code == 401 && rec.Header().Get("WWW-Authenticate") != `Bearer realm="citysense-admin"` {
				t.Errorf("WWW-Authenticate = %q", rec.Header().Get("WWW-Authenticate"))
			}
		})
	}
	if n := len(f.creds.Agents()); n != 0 {
		t.Errorf("refused requests enrolled %d agents", n)
	}
}

func TestAPI_admin_agents(t *testing.T) {
	f := newWriteFixture(t, WriteLimits{})
	rec := f.admin_("POST", "/admin/v1/agents", f.admin, `{"id":"gw-a"}`)
	if rec.Code != 201 {
		t.Fatalf("POST: %d %s", rec.Code, rec.Body)
	}
	var created struct {
		ID, PublicKey, Creds string
		Revoked              *string
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &created); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	json.Unmarshal(rec.Body.Bytes(), &raw)
	created.PublicKey, _ = raw["public_key"].(string)
	kp, err := nkeys.ParseDecoratedNKey([]byte(created.Creds))
	if err != nil {
		t.Fatalf("creds in the answer do not parse: %v\n%s", err, created.Creds)
	}
	if pub, _ := kp.PublicKey(); created.ID != "gw-a" || pub != created.PublicKey || raw["revoked"] != nil {
		t.Errorf("created %+v, creds key %s", raw, pub)
	}
	if a, ok := f.creds.AgentByKey(created.PublicKey); !ok || a.ID != "gw-a" {
		t.Error("agent not enrolled in the registry")
	}

	tests := []struct {
		name, method, target, body string
		code                       int
		want                       string // substring of the answer
	}{
		{"list never shows creds", "GET", "/admin/v1/agents", "", 200, `"id":"gw-a","public_key":"` + created.PublicKey + `"`},
		{"duplicate", "POST", "/admin/v1/agents", `{"id":"gw-a"}`, 409, `already exists`},
		{"bad id", "POST", "/admin/v1/agents", `{"id":"gw.a"}`, 400, `want 1 to 64 of A-Z a-z 0-9 _ -`},
		{"reserved id", "POST", "/admin/v1/agents", `{"id":"http"}`, 400, `reserved`},
		{"unknown field", "POST", "/admin/v1/agents", `{"id":"gw-b","key":"x"}`, 400, `unknown field \"key\"`},
		{"not json", "POST", "/admin/v1/agents", `id=gw-b`, 400, `body: invalid character`},
		{"two values", "POST", "/admin/v1/agents", `{"id":"gw-b"}{}`, 400, `more than one JSON value`},
		{"revoke", "DELETE", "/admin/v1/agents/gw-a", "", 200, `"id":"gw-a"`},
		{"revoke unknown", "DELETE", "/admin/v1/agents/gw-z", "", 404, `not found`},
		{"wrong method", "PUT", "/admin/v1/agents", "", 405, `{"error":"method PUT not allowed; use GET or POST"}`},
		{"wrong method on one agent", "GET", "/admin/v1/agents/gw-a", "", 405, `{"error":"method GET not allowed; use DELETE"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.admin_(tt.method, tt.target, f.admin, tt.body)
			if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.want) {
				t.Errorf("got %d %s, want %d containing %s", rec.Code, rec.Body, tt.code, tt.want)
			}
			if strings.Contains(rec.Body.String(), "SEED") && tt.method != "POST" {
				t.Errorf("answer holds a seed: %s", rec.Body)
			}
		})
	}
	if _, ok := f.creds.AgentByKey(created.PublicKey); ok {
		t.Error("DELETE did not revoke")
	}
	if n := len(f.creds.Agents()); n != 1 {
		t.Errorf("%d agents, want 1", n)
	}
}

func TestAPI_admin_tokens(t *testing.T) {
	f := newWriteFixture(t, WriteLimits{})
	rec := f.admin_("POST", "/admin/v1/tokens", f.admin, `{"name":"sensors"}`)
	if rec.Code != 201 {
		t.Fatalf("POST: %d %s", rec.Code, rec.Body)
	}
	var created struct {
		Name, Token string
		Admin       bool
	}
	json.Unmarshal(rec.Body.Bytes(), &created)
	if tok, ok := f.creds.VerifyToken(created.Token); !ok || tok.Name != "sensors" || tok.Admin || created.Admin {
		t.Fatalf("created %+v does not verify as a write token", created)
	}
	rec = f.admin_("GET", "/admin/v1/tokens", f.admin, "")
	if rec.Code != 200 || strings.Contains(rec.Body.String(), created.Token) || strings.Contains(rec.Body.String(), "sha256") {
		t.Errorf("list: %d %s (must show neither secrets nor hashes)", rec.Code, rec.Body)
	}
	var list struct {
		Tokens []struct {
			Name  string
			Admin bool
		}
	}
	json.Unmarshal(rec.Body.Bytes(), &list)
	if len(list.Tokens) != 3 || list.Tokens[0].Name != "ops" || !list.Tokens[0].Admin || list.Tokens[1].Name != "sensors" {
		t.Errorf("list = %+v", list.Tokens)
	}
	rec = f.admin_("POST", "/admin/v1/tokens", f.admin, `{"name":"root2","admin":true}`)
	if rec.Code != 201 || !strings.Contains(rec.Body.String(), `"admin":true`) {
		t.Errorf("admin token: %d %s", rec.Code, rec.Body)
	}
	if rec := f.admin_("DELETE", "/admin/v1/tokens/sensors", f.admin, ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"revoked":"`) {
		t.Errorf("DELETE: %d %s", rec.Code, rec.Body)
	}
	if _, ok := f.creds.VerifyToken(created.Token); ok {
		t.Error("revoked token still verifies")
	}
	// An admin may revoke its own token; the next request is refused.
	if rec := f.admin_("DELETE", "/admin/v1/tokens/ops", f.admin, ""); rec.Code != 200 {
		t.Errorf("self-revoke: %d", rec.Code)
	}
	if rec := f.admin_("GET", "/admin/v1/tokens", f.admin, ""); rec.Code != 401 {
		t.Errorf("after self-revoke: %d, want 401", rec.Code)
	}
}

// GET /admin/v1/local/series reads the node's own store, not the
// cluster's, and only with an admin token.
func TestAPI_localSeries(t *testing.T) {
	creds, err := auth.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	admin, _, err := creds.AddToken("ops", true)
	if err != nil {
		t.Fatal(err)
	}
	writer, _, err := creds.AddToken("telegraf", false)
	if err != nil {
		t.Fatal(err)
	}
	a := newTestAPI(t, Options{Store: emptyStore(t), LocalStore: testStore(t), Credentials: creds})
	get := func(path, tok string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "http://collector"+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		a.ServeHTTP(rec, req)
		return rec
	}
	const q = "?field=pm25&station=s0002"
	if rec := get("/api/v1/series"+q, ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"series":[]`) {
		t.Fatalf("public series from the (empty) cluster store: %d %s", rec.Code, rec.Body)
	}
	if rec := get("/admin/v1/local/series"+q, admin); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"points":[[1735729200,7.25]]`) {
		t.Fatalf("local series: %d %s", rec.Code, rec.Body)
	}
	if rec := get("/admin/v1/local/series"+q, ""); rec.Code != 401 {
		t.Fatalf("local series without a token: %d", rec.Code)
	}
	if rec := get("/admin/v1/local/series"+q, writer); rec.Code != 403 {
		t.Fatalf("local series with a write token: %d", rec.Code)
	}
}
