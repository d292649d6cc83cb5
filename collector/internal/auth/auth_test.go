package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func openTest(t *testing.T, dir string, log *slog.Logger) *Credentials {
	t.Helper()
	c, err := Open(dir, log)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	c.now = func() time.Time { return testNow }
	return c
}

func TestCredentials_AddAgent_credsLoadWithNkeyOptionFromSeed(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, nil)
	a, creds, err := c.AddAgent("gw-017")
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != "gw-017" || !nkeys.IsValidPublicUserKey(a.PublicKey) || !a.Created.Equal(testNow) || !a.Active() {
		t.Fatalf("agent = %+v", a)
	}
	for _, want := range []string{"-----BEGIN USER NKEY SEED-----\nSU", "------END USER NKEY SEED------\n", "nats.NkeyOptionFromSeed", a.PublicKey} {
		if !bytes.Contains(creds, []byte(want)) {
			t.Errorf("creds lack %q:\n%s", want, creds)
		}
	}
	// The file the CLI writes is what the agent's NATS client loads.
	path := filepath.Join(dir, "gw-017.creds")
	if err := WriteFileAtomic(path, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := nats.NkeyOptionFromSeed(path); err != nil {
		t.Fatalf("nats.NkeyOptionFromSeed: %v", err)
	}
	kp, err := nkeys.ParseDecoratedNKey(creds)
	if err != nil {
		t.Fatal(err)
	}
	if pub, _ := kp.PublicKey(); pub != a.PublicKey {
		t.Errorf("creds hold key %s, agent has %s", pub, a.PublicKey)
	}
	if got, ok := c.AgentByKey(a.PublicKey); !ok || got.ID != "gw-017" {
		t.Errorf("AgentByKey = %+v, %v", got, ok)
	}
	if n := c.ActiveAgents(); n != 1 {
		t.Errorf("ActiveAgents = %d", n)
	}

	// agents.json: public data only, private to the collector's user.
	fi, err := os.Stat(filepath.Join(dir, AgentsFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("agents.json mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(filepath.Join(dir, AgentsFile))
	want := fmt.Sprintf(`{
  "version": 1,
  "agents": [
    {
      "id": "gw-017",
      "public_key": %q,
      "created": "2026-03-01T12:00:00Z"
    }
  ]
}
`, a.PublicKey)
	if string(data) != want {
		t.Errorf("agents.json =\n%s\nwant\n%s", data, want)
	}
}

func TestCredentials_AddAgent_errors(t *testing.T) {
	c := openTest(t, t.TempDir(), nil)
	if _, _, err := c.AddAgent("gw-a"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id   string
		want error
	}{
		{"", ErrInvalidName},
		{"gw.a", ErrInvalidName},
		{"gw a", ErrInvalidName},
		{"gw>", ErrInvalidName},
		{strings.Repeat("a", 65), ErrInvalidName},
		{"http", ErrReserved},
		{"gw-a", ErrExists},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			if _, _, err := c.AddAgent(tt.id); !errors.Is(err, tt.want) {
				t.Errorf("AddAgent(%q) = %v, want %v", tt.id, err, tt.want)
			}
		})
	}
	if n := len(c.Agents()); n != 1 {
		t.Errorf("%d agents after the failed adds, want 1", n)
	}
	if _, _, err := c.AddAgent(strings.Repeat("a", 64)); err != nil {
		t.Errorf("64-character id: %v", err)
	}
}

func TestCredentials_RevokeAgent(t *testing.T) {
	c := openTest(t, t.TempDir(), nil)
	a, _, err := c.AddAgent("gw-a")
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return testNow.Add(time.Hour) }
	got, err := c.RevokeAgent("gw-a")
	if err != nil || got.Revoked == nil || !got.Revoked.Equal(testNow.Add(time.Hour)) {
		t.Fatalf("RevokeAgent = %+v, %v", got, err)
	}
	if _, ok := c.AgentByKey(a.PublicKey); ok {
		t.Error("a revoked agent's key is still accepted")
	}
	if n := c.ActiveAgents(); n != 0 {
		t.Errorf("ActiveAgents = %d, want 0", n)
	}
	// Idempotent: the first revocation time stays.
	c.now = func() time.Time { return testNow.Add(2 * time.Hour) }
	if again, err := c.RevokeAgent("gw-a"); err != nil || !again.Revoked.Equal(testNow.Add(time.Hour)) {
		t.Errorf("second RevokeAgent = %+v, %v", again, err)
	}
	if _, err := c.RevokeAgent("gw-x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeAgent(unknown) = %v, want ErrNotFound", err)
	}
	// A revoked id may be enrolled again, with a new key.
	b, _, err := c.AddAgent("gw-a")
	if err != nil || b.PublicKey == a.PublicKey || !b.Active() {
		t.Fatalf("re-enroll = %+v, %v", b, err)
	}
	if list := c.Agents(); len(list) != 1 || list[0].PublicKey != b.PublicKey {
		t.Errorf("Agents = %+v, want only the new enrollment", list)
	}
}

func TestCredentials_Token(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, nil)
	secret, tok, err := c.AddToken("telegraf", false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, TokenPrefix) || len(secret) != len(TokenPrefix)+43 {
		t.Errorf("secret %q: want cs_ and 43 base64url characters", secret)
	}
	adminSecret, _, err := c.AddToken("ops", true)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		secret string
		want   string // token name, "" for refused
		admin  bool
	}{
		{"writer", secret, "telegraf", false},
		{"admin", adminSecret, "ops", true},
		{"empty", "", "", false},
		{"wrong", secret[:len(secret)-1] + "x", "", false},
		{"prefix only", TokenPrefix, "", false},
		{"hash instead of secret", tok.Hash, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := c.VerifyToken(tt.secret)
			if ok != (tt.want != "") || got.Name != tt.want || got.Admin != tt.admin {
				t.Errorf("VerifyToken = %+v, %v; want %q admin=%v", got, ok, tt.want, tt.admin)
			}
		})
	}
	if _, _, err := c.AddToken("telegraf", false); !errors.Is(err, ErrExists) {
		t.Errorf("second AddToken = %v, want ErrExists", err)
	}
	if _, _, err := c.AddToken("a.b", false); !errors.Is(err, ErrInvalidName) {
		t.Errorf("AddToken(a.b) = %v, want ErrInvalidName", err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, TokensFile))
	if bytes.Contains(data, []byte(secret)) || !bytes.Contains(data, []byte(tok.Hash)) {
		t.Errorf("tokens.json must hold the hash, never the secret:\n%s", data)
	}

	if _, err := c.RevokeToken("telegraf"); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.VerifyToken(secret); ok || c.TokenActive("telegraf") {
		t.Error("a revoked token is still accepted")
	}
	if !c.TokenActive("ops") {
		t.Error("ops is not active")
	}
	if _, err := c.RevokeToken("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeToken(unknown) = %v", err)
	}
	list := c.Tokens()
	if len(list) != 2 || list[0].Name != "ops" || list[1].Name != "telegraf" || list[1].Revoked == nil {
		t.Errorf("Tokens = %+v", list)
	}
}

// The CLI and the running collector are two Credentials on one directory:
// a change by one is seen by the other's next Reload.
func TestCredentials_Reload_sharedBetweenProcesses(t *testing.T) {
	dir := t.TempDir()
	collector := openTest(t, dir, nil)
	cliSide := openTest(t, dir, nil)
	if collector.Reload() {
		t.Error("Reload reports a change with nothing changed")
	}
	a, _, err := cliSide.AddAgent("gw-a")
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := cliSide.AddToken("t1", false)
	if err != nil {
		t.Fatal(err)
	}
	if !collector.Reload() {
		t.Fatal("Reload missed the change")
	}
	if _, ok := collector.AgentByKey(a.PublicKey); !ok {
		t.Error("collector does not know the agent enrolled by the CLI")
	}
	if _, ok := collector.VerifyToken(secret); !ok {
		t.Error("collector does not accept the token created by the CLI")
	}
	if collector.Reload() {
		t.Error("second Reload reports a change")
	}
	// A change made by the collector (admin API) is not lost by the CLI's
	// next change, which re-reads the file under the lock.
	if _, _, err := collector.AddAgent("gw-b"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cliSide.AddAgent("gw-c"); err != nil {
		t.Fatal(err)
	}
	collector.Reload()
	var ids []string
	for _, a := range collector.Agents() {
		ids = append(ids, a.ID)
	}
	if strings.Join(ids, ",") != "gw-a,gw-b,gw-c" {
		t.Errorf("agents = %v, want gw-a,gw-b,gw-c", ids)
	}
}

func TestCredentials_AddAgent_concurrentWritersLoseNothing(t *testing.T) {
	dir := t.TempDir()
	sides := []*Credentials{openTest(t, dir, nil), openTest(t, dir, nil)}
	var wg sync.WaitGroup
	for s, c := range sides {
		for i := range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, _, err := c.AddAgent(fmt.Sprintf("gw-%d-%d", s, i)); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	fresh := openTest(t, dir, nil)
	if n := len(fresh.Agents()); n != 10 {
		t.Errorf("%d agents on disk, want 10", n)
	}
}

func TestCredentials_Reload_brokenFileKeepsLastGoodState(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	c := openTest(t, dir, log)
	a, _, err := c.AddAgent("gw-a")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, AgentsFile)
	if err := os.WriteFile(path, []byte(`{"version":1,"agents":[{"id":"gw-a"`), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if c.Reload() {
			t.Fatal("Reload applied a broken file")
		}
	}
	if _, ok := c.AgentByKey(a.PublicKey); !ok {
		t.Fatal("the last good state was dropped")
	}
	mu.Lock()
	if n := strings.Count(logs.String(), "credentials file is broken"); n != 1 {
		t.Errorf("broken file logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("broken file not logged at error:\n%s", logs.String())
	}
	mu.Unlock()
	// Other broken content: an agent with a bad key.
	os.WriteFile(path, []byte(`{"version":1,"agents":[{"id":"gw-b","public_key":"nope"}]}`), 0o600)
	if c.Reload() || c.ActiveAgents() != 1 {
		t.Fatal("a bad key replaced the good state")
	}
	// Fixed: the new content applies.
	os.WriteFile(path, []byte(`{"version":1,"agents":[]}`), 0o600)
	if !c.Reload() || c.ActiveAgents() != 0 {
		t.Fatalf("fixed file not applied: %d active", c.ActiveAgents())
	}
	// Removed: nobody enrolled, as after a restart.
	c.AddAgent("gw-z")
	os.Remove(path)
	if !c.Reload() || c.ActiveAgents() != 0 {
		t.Errorf("removed file: %d active, want 0", c.ActiveAgents())
	}
}

func TestOpen_brokenFile(t *testing.T) {
	tests := []struct {
		name, file, content, want string
	}{
		{"agents not json", AgentsFile, "{", "parse agents file"},
		{"agents wrong version", AgentsFile, `{"version":2}`, "version 2, want 1"},
		{"agents duplicate", AgentsFile, `{"version":1,"agents":[{"id":"a","public_key":"UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"},{"id":"a","public_key":"UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"}]}`, "listed twice"},
		{"tokens bad hash", TokensFile, `{"version":1,"tokens":[{"name":"t","sha256":"zz"}]}`, "not 64 hex digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, tt.file), []byte(tt.content), 0o600)
			_, err := Open(dir, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), filepath.Join(dir, tt.file)) {
				t.Errorf("Open = %v, want an error naming the file and %q", err, tt.want)
			}
		})
	}
}

func TestCredentials_Watch_reportsChanges(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, nil)
	other := openTest(t, dir, nil)
	changes := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Watch(ctx, 10*time.Millisecond, func() { changes <- struct{}{} })
	}()
	defer func() { cancel(); <-done }()

	wait := func(what string) {
		t.Helper()
		select {
		case <-changes:
		case <-time.After(5 * time.Second):
			t.Fatalf("no change reported after %s", what)
		}
	}
	// A change made in this process is reported without a poll.
	if _, _, err := c.AddAgent("gw-a"); err != nil {
		t.Fatal(err)
	}
	wait("AddAgent in this process")
	// A change made by another process is found by polling.
	if _, _, err := other.AddToken("t", false); err != nil {
		t.Fatal(err)
	}
	wait("AddToken in another process")
	if !c.TokenActive("t") {
		t.Error("token not loaded")
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.creds")
	for _, content := range []string{"one", "two"} {
		if err := WriteFileAtomic(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(path)
		if string(got) != content {
			t.Errorf("content %q, want %q", got, content)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the file (no temporary leftovers)", len(entries))
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "x"), nil, 0o600); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestOpen_missingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "yet")
	c, err := Open(dir, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if len(c.Agents()) != 0 || c.ActiveAgents() != 0 {
		t.Error("agents in a missing directory")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open created %s (a list must not leave directories behind): %v", dir, err)
	}
	if _, _, err := c.AddAgent("gw-a"); err != nil {
		t.Fatalf("AddAgent creates the directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, AgentsFile)); err != nil {
		t.Error(err)
	}
}
