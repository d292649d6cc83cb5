package bus

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/citysense/citysense/collector/internal/auth"
)

// fakeCreds is an in-memory Credentials.
type fakeCreds struct {
	agents []auth.Agent
	tokens map[string]auth.Token // by secret
}

func (f *fakeCreds) AgentByKey(pub string) (auth.Agent, bool) {
	for _, a := range f.agents {
		if a.PublicKey == pub && a.Active() {
			return a, true
		}
	}
	return auth.Agent{}, false
}
func (f *fakeCreds) Agents() []auth.Agent { return f.agents }
func (f *fakeCreds) ActiveAgents() int {
	n := 0
	for _, a := range f.agents {
		if a.Active() {
			n++
		}
	}
	return n
}
func (f *fakeCreds) VerifyToken(s string) (auth.Token, bool) { t, ok := f.tokens[s]; return t, ok }
func (f *fakeCreds) TokenActive(name string) bool {
	for _, t := range f.tokens {
		if t.Name == name {
			return true
		}
	}
	return false
}

// fakeClient is one connection as the authenticator sees it.
type fakeClient struct {
	opts  server.ClientOpts
	nonce []byte
	user  *server.User
}

func (f *fakeClient) GetOpts() *server.ClientOpts                 { return &f.opts }
func (f *fakeClient) GetTLSConnectionState() *tls.ConnectionState { return nil }
func (f *fakeClient) RegisterUser(u *server.User)                 { f.user = u }
func (f *fakeClient) RemoteAddress() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}
}
func (f *fakeClient) GetNonce() []byte { return f.nonce }
func (f *fakeClient) Kind() int        { return server.CLIENT }
func (f *fakeClient) GetID() uint64    { return 1 }

func newUser(t *testing.T) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return kp, pub
}

func sign(t *testing.T, kp nkeys.KeyPair, nonce []byte) string {
	t.Helper()
	sig, err := kp.Sign(nonce)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(sig)
}

// counter reads one sample of a metrics set.
func counter(set *metrics.Set, name string) float64 {
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

func TestAuthenticator_Check(t *testing.T) {
	nonce := []byte("nonce-1234")
	agentKP, agentPub := newUser(t)
	revokedKP, revokedPub := newUser(t)
	strangerKP, strangerPub := newUser(t)
	const internalToken = "internal-0123456789abcdef"
	accountKP, _ := nkeys.CreateAccount()
	accountPub, _ := accountKP.PublicKey()
	revokedAt := time.Now()
	withAgents := &fakeCreds{
		agents: []auth.Agent{{ID: "gw-a", PublicKey: agentPub}, {ID: "gw-old", PublicKey: revokedPub, Revoked: &revokedAt}},
		tokens: map[string]auth.Token{"cs_secret": {Name: "sensors"}},
	}
	noAgents := &fakeCreds{tokens: withAgents.tokens}

	agentPerms := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{"cs.raw.gw-a"}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.gw-a.>"}},
	}
	tokenPerms := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{"cs.raw.*"}, Deny: []string{"cs.raw.http", "cs.raw.gw-a", "cs.raw.gw-old"}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
	anonPerms := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{"cs.raw.>"}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}

	tests := []struct {
		name     string
		creds    *fakeCreds
		loopback bool
		opts     server.ClientOpts
		user     string              // registered user name; "" means refused
		perms    *server.Permissions // for accepted clients
		reason   string              // for refused clients
	}{
		{"enrolled agent", withAgents, true, server.ClientOpts{Nkey: agentPub, Sig: sign(t, agentKP, nonce)}, "agent:gw-a", agentPerms, ""},
		{"standard base64 signature", withAgents, true, server.ClientOpts{Nkey: agentPub,
			Sig: base64.StdEncoding.EncodeToString(must(agentKP.Sign(nonce)))}, "agent:gw-a", agentPerms, ""},
		{"signature over another nonce", withAgents, true, server.ClientOpts{Nkey: agentPub, Sig: sign(t, agentKP, []byte("other"))}, "", nil, reasonBadSignature},
		{"someone else's signature", withAgents, true, server.ClientOpts{Nkey: agentPub, Sig: sign(t, strangerKP, nonce)}, "", nil, reasonBadSignature},
		{"signature not base64", withAgents, true, server.ClientOpts{Nkey: agentPub, Sig: "!!"}, "", nil, reasonBadSignature},
		{"key not enrolled", withAgents, true, server.ClientOpts{Nkey: strangerPub, Sig: sign(t, strangerKP, nonce)}, "", nil, reasonUnknownKey},
		{"revoked agent", withAgents, true, server.ClientOpts{Nkey: revokedPub, Sig: sign(t, revokedKP, nonce)}, "", nil, reasonUnknownKey},
		{"revoked agent in dev mode", noAgents, true, server.ClientOpts{Nkey: strangerPub, Sig: sign(t, strangerKP, nonce)}, "", nil, reasonUnknownKey},
		{"account key", withAgents, true, server.ClientOpts{Nkey: accountPub, Sig: sign(t, accountKP, nonce)}, "", nil, reasonUnknownKey},
		{"collector's own token", withAgents, false, server.ClientOpts{Token: internalToken}, "collector", nil, ""},
		{"collector's token with a user name", withAgents, false, server.ClientOpts{Username: "x", Token: internalToken}, "", nil, reasonBadToken},
		{"collector's token as a password", withAgents, false, server.ClientOpts{Username: "x", Password: internalToken}, "", nil, reasonBadToken},
		{"token", withAgents, false, server.ClientOpts{Token: "cs_secret"}, "token:sensors", tokenPerms, ""},
		{"token as password (MQTT, NATS user/password)", withAgents, false, server.ClientOpts{Username: "dev1", Password: "cs_secret"}, "token:sensors", tokenPerms, ""},
		{"wrong token", withAgents, true, server.ClientOpts{Token: "cs_wrong"}, "", nil, reasonBadToken},
		{"wrong token in dev mode", noAgents, true, server.ClientOpts{Password: "cs_wrong"}, "", nil, reasonBadToken},
		{"jwt", withAgents, true, server.ClientOpts{JWT: "eyJ..."}, "", nil, reasonUnsupported},
		{"nothing, dev mode", noAgents, true, server.ClientOpts{}, "anonymous", anonPerms, ""},
		{"user name only, dev mode", noAgents, true, server.ClientOpts{Username: "dev1"}, "anonymous", anonPerms, ""},
		{"nothing, agent enrolled", withAgents, true, server.ClientOpts{}, "", nil, reasonNoCredentials},
		{"nothing, beyond loopback", noAgents, false, server.ClientOpts{}, "", nil, reasonNoCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &authenticator{creds: tt.creds, internalToken: internalToken, loopbackOnly: tt.loopback, log: slog.New(slog.DiscardHandler),
				refusedLog: limiter{every: time.Minute}}
			a.metrics = newBusMetrics(a.devMode)
			c := &fakeClient{opts: tt.opts, nonce: nonce}
			ok := a.Check(c)
			if ok != (tt.user != "") {
				t.Fatalf("Check = %v, want %v", ok, tt.user != "")
			}
			failures := counter(a.metrics.set, `citysense_bus_auth_failures_total{reason="`+tt.reason+`"}`)
			if !ok {
				if c.user != nil {
					t.Errorf("refused client was registered as %+v", c.user)
				}
				if failures != 1 {
					t.Errorf("auth failures{%s} = %v, want 1", tt.reason, failures)
				}
				return
			}
			if c.user == nil || c.user.Username != tt.user {
				t.Fatalf("registered %+v, want user %q", c.user, tt.user)
			}
			if got, want := fmt.Sprint(permString(c.user.Permissions)), fmt.Sprint(permString(tt.perms)); got != want {
				t.Errorf("permissions %s, want %s", got, want)
			}
		})
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func permString(p *server.Permissions) string {
	if p == nil {
		return "all"
	}
	return fmt.Sprintf("pub allow %v deny %v, sub allow %v deny %v", p.Publish.Allow, p.Publish.Deny, p.Subscribe.Allow, p.Subscribe.Deny)
}

// enrolled starts a bus on loopback with real credentials and one agent,
// gw-a, whose creds file it returns.
func enrolled(t *testing.T, cfg Config) (*Bus, *auth.Credentials, string) {
	t.Helper()
	dir := t.TempDir()
	creds, err := auth.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, file, err := creds.AddAgent("gw-a")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "gw-a.creds")
	if err := auth.WriteFileAtomic(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Name, cfg.StoreDir, cfg.Credentials = "test", filepath.Join(dir, "bus"), creds
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Start(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(b.Shutdown)
	return b, creds, path
}

// connect returns a client connection with its errors collected.
func connect(t *testing.T, url string, opts ...nats.Option) (*nats.Conn, chan error, error) {
	t.Helper()
	errs := make(chan error, 16)
	opts = append(opts, nats.NoReconnect(), nats.Timeout(5*time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	nc, err := nats.Connect(url, opts...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, errs, err
}

func streamMsgs(t *testing.T, b *Bus) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := b.JetStream().Stream(ctx, StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		out = append(out, m.Subject+" "+string(m.Data))
	}
	return out
}

// An enrolled agent publishes to its own subject and nowhere else; a client
// without credentials or with an unknown key does not get in; a revoked
// agent is disconnected.
func TestBus_auth_agents(t *testing.T) {
	b, creds, credsPath := enrolled(t, Config{})
	if b.DevMode() || counter(b.Metrics(), "citysense_bus_dev_mode") != 0 {
		t.Fatal("dev mode with an agent enrolled")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	opt, err := nats.NkeyOptionFromSeed(credsPath)
	if err != nil {
		t.Fatal(err)
	}
	nc, errs, err := connect(t, b.ClientURL(), opt, nats.CustomInboxPrefix(AgentInboxPrefix+"gw-a"))
	if err != nil {
		t.Fatalf("enrolled agent refused: %v", err)
	}
	js, _ := jetstream.New(nc)
	if _, err := js.Publish(ctx, "cs.raw.gw-a", []byte("own"), jetstream.WithMsgID("gw-a-1")); err != nil {
		t.Fatalf("publish to own subject: %v", err)
	}

	// Another agent's subject: refused by the server, so no ack comes.
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = js.Publish(short, "cs.raw.gw-b", []byte("spoofed"))
	cancelShort()
	if err == nil {
		t.Fatal("publish to another agent's subject was acknowledged")
	}
	if err := waitErr(errs, "Permissions Violation for Publish"); err != nil {
		t.Error(err)
	}
	// The streams' API is out of reach too.
	if _, err := nc.Request("$JS.API.STREAM.INFO."+StreamRaw, nil, 300*time.Millisecond); err == nil {
		t.Error("agent reached the JetStream API")
	}
	if _, err := nc.SubscribeSync("cs.raw.>"); err == nil {
		if err := waitErr(errs, "Permissions Violation for Subscription"); err != nil {
			t.Error(err)
		}
	}
	// Other agents' inboxes, where their PubAcks arrive, are out of reach.
	if _, err := nc.SubscribeSync("_INBOX.>"); err == nil {
		if err := waitErr(errs, "Permissions Violation for Subscription"); err != nil {
			t.Error(err)
		}
	}
	// nats-server sends the -ERR to the client before it logs the
	// violation, and the log line is what is counted: wait for it.
	if v := waitCounter(b, "citysense_bus_permission_violations_total", 4); v < 4 {
		t.Errorf("permission violations = %v, want at least 4", v)
	}

	// No credentials, an unknown key: refused and counted.
	if _, _, err := connect(t, b.ClientURL()); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Errorf("client without credentials: %v, want Authorization Violation", err)
	}
	stranger, _ := nkeys.CreateUser()
	spub, _ := stranger.PublicKey()
	if _, _, err := connect(t, b.ClientURL(), nats.Nkey(spub, stranger.Sign)); err == nil {
		t.Error("unknown key accepted")
	}
	for reason, want := range map[string]float64{reasonNoCredentials: 1, reasonUnknownKey: 1, reasonBadSignature: 0} {
		if got := counter(b.Metrics(), `citysense_bus_auth_failures_total{reason="`+reason+`"}`); got != want {
			t.Errorf("auth failures{%s} = %v, want %v", reason, got, want)
		}
	}

	// Revoked: the open connection is closed and the key refused.
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if _, err := creds.RevokeAgent("gw-a"); err != nil {
		t.Fatal(err)
	}
	b.Revalidate()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("revoked agent still connected")
	}
	if _, _, err := connect(t, b.ClientURL(), opt); err == nil {
		t.Error("revoked agent reconnected")
	}

	if got := streamMsgs(t, b); !slices.Equal(got, []string{"cs.raw.gw-a own"}) {
		t.Errorf("CS_RAW holds %q, want only the agent's own batch", got)
	}
}

// waitCounter polls a metric until it reaches want or 3 s pass, and
// returns its last value.
func waitCounter(b *Bus, name string, want float64) float64 {
	deadline := time.Now().Add(3 * time.Second)
	for {
		v := counter(b.Metrics(), name)
		if v >= want || time.Now().After(deadline) {
			return v
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitErr(errs chan error, want string) error {
	timeout := time.After(3 * time.Second)
	for {
		select {
		case err := <-errs:
			if strings.Contains(err.Error(), want) {
				return nil
			}
		case <-timeout:
			return fmt.Errorf("no async error containing %q", want)
		}
	}
}

// Development mode: loopback and nobody enrolled. Anonymous clients may
// publish raw batches; the first enrollment ends it and closes them.
func TestBus_auth_devMode(t *testing.T) {
	dir := t.TempDir()
	creds, err := auth.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Start(ctx, Config{Name: "test", StoreDir: dir, Listen: "127.0.0.1:0", Credentials: creds}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	if !b.DevMode() || counter(b.Metrics(), "citysense_bus_dev_mode") != 1 {
		t.Fatal("not in dev mode on loopback with nobody enrolled")
	}
	nc, _, err := connect(t, b.ClientURL())
	if err != nil {
		t.Fatalf("anonymous client refused in dev mode: %v", err)
	}
	js, _ := jetstream.New(nc)
	if _, err := js.Publish(ctx, "cs.raw.manual", []byte("dev")); err != nil {
		t.Fatalf("anonymous publish: %v", err)
	}
	if _, err := nc.Request("$JS.API.STREAM.DELETE."+StreamRaw, nil, 300*time.Millisecond); err == nil {
		t.Error("anonymous client reached the JetStream API")
	}

	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if _, _, err := creds.AddAgent("gw-a"); err != nil {
		t.Fatal(err)
	}
	b.Revalidate()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("anonymous client still connected after dev mode ended")
	}
	if _, _, err := connect(t, b.ClientURL()); err == nil {
		t.Error("anonymous client accepted after dev mode ended")
	}
	if b.DevMode() || counter(b.Metrics(), "citysense_bus_dev_mode") != 0 {
		t.Error("still dev mode with an agent enrolled")
	}
	if got := streamMsgs(t, b); !slices.Equal(got, []string{"cs.raw.manual dev"}) {
		t.Errorf("CS_RAW holds %q", got)
	}
	b.Shutdown()
	out := logs.String()
	for _, want := range []string{"level=WARN msg=\"DEVELOPMENT MODE", "development mode ended"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// syncWriter lets the server's goroutines and the test share a log buffer.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// A token client (an MQTT device, or NATS with the token) publishes under
// cs.raw.<device> but not as an enrolled agent.
func TestBus_auth_token(t *testing.T) {
	b, creds, _ := enrolled(t, Config{})
	secret, _, err := creds.AddToken("sensors", false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, errs, err := connect(t, b.ClientURL(), nats.Token(secret))
	if err != nil {
		t.Fatalf("token refused: %v", err)
	}
	js, _ := jetstream.New(nc)
	if _, err := js.Publish(ctx, "cs.raw.dev-7", []byte("device")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	for _, subj := range []string{"cs.raw.gw-a", "cs.raw.http", "cs.raw.http.x"} {
		short, c := context.WithTimeout(ctx, 300*time.Millisecond)
		if _, err := js.Publish(short, subj, []byte("spoof")); err == nil {
			t.Errorf("token client published to %s", subj)
		}
		c()
	}
	if err := waitErr(errs, "Permissions Violation for Publish"); err != nil {
		t.Error(err)
	}
	if _, _, err := connect(t, b.ClientURL(), nats.Token(secret+"x")); err == nil {
		t.Error("wrong token accepted")
	}
	if got := streamMsgs(t, b); !slices.Equal(got, []string{"cs.raw.dev-7 device"}) {
		t.Errorf("CS_RAW holds %q", got)
	}
}

func TestSlogLogger_Errorf_countsViolations(t *testing.T) {
	var buf bytes.Buffer
	set := metrics.NewSet()
	l := &slogLogger{log: slog.New(slog.NewTextHandler(&buf, nil)), violations: set.NewCounter("v"), violationLog: limiter{every: time.Hour}}
	l.Errorf("%s - %s", "127.0.0.1:1 - cid:5", `Publish Violation - Subject "cs.raw.gw-b"`)
	l.Errorf("%s - Subscription Violation - Subject %q, SID 1", "cid:5", "cs.raw.>")
	l.Errorf("127.0.0.1:1 - cid:6 - authentication error")
	l.Errorf("something else broke")
	if v := counter(set, "v"); v != 2 {
		t.Errorf("violations = %v, want 2", v)
	}
	out := buf.String()
	if n := strings.Count(out, "permission violation"); n != 1 {
		t.Errorf("%d violation lines, want 1 (rate-limited):\n%s", n, out)
	}
	if strings.Contains(out, "authentication error") {
		t.Errorf("per-attempt authentication error logged above debug:\n%s", out)
	}
	if !strings.Contains(out, `level=ERROR msg="something else broke"`) {
		t.Errorf("other errors must stay errors:\n%s", out)
	}
}

func TestLimiter_allow(t *testing.T) {
	l := limiter{every: time.Second}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{0, true, 0}, {100 * time.Millisecond, false, 0}, {500 * time.Millisecond, false, 0},
		{time.Second, true, 2}, {1500 * time.Millisecond, false, 0}, {3 * time.Second, true, 1},
	}
	for i, s := range steps {
		ok, n := l.allow(t0.Add(s.at))
		if ok != s.ok || n != s.suppressed {
			t.Errorf("step %d: allow = %v, %d; want %v, %d", i, ok, n, s.ok, s.suppressed)
		}
	}
}
