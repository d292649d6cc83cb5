package bus

import (
	"crypto/subtle"
	"encoding/base64"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/citysense/citysense/collector/internal/auth"
)

// Credentials is what the bus asks when a client connects. The methods are
// called on nats-server's connection goroutines and must be safe for
// concurrent use and quick: a connection waits for them.
type Credentials interface {
	// AgentByKey returns the active agent with this NKey public key.
	AgentByKey(pub string) (auth.Agent, bool)
	// Agents lists every agent, revoked ones included.
	Agents() []auth.Agent
	// ActiveAgents counts the agents that are not revoked.
	ActiveAgents() int
	// VerifyToken returns the active token whose secret this is.
	VerifyToken(secret string) (auth.Token, bool)
	// TokenActive reports whether the named token exists and is not revoked.
	TokenActive(name string) bool
}

// noCredentials is the Credentials of a bus started without any: nobody
// is enrolled.
type noCredentials struct{}

func (noCredentials) AgentByKey(string) (auth.Agent, bool)  { return auth.Agent{}, false }
func (noCredentials) Agents() []auth.Agent                  { return nil }
func (noCredentials) ActiveAgents() int                     { return 0 }
func (noCredentials) VerifyToken(string) (auth.Token, bool) { return auth.Token{}, false }
func (noCredentials) TokenActive(string) bool               { return false }

// Subjects and names of the authorisation scheme.
const (
	// subjectRawPrefix + <agent-id> is the one subject an agent may
	// publish to.
	subjectRawPrefix = "cs.raw."
	// clientInbox is where nats.go clients receive replies (JetStream's
	// PubAck among them) unless told otherwise.
	clientInbox = "_INBOX.>"
	// AgentInboxPrefix + <agent-id> is an agent's own inbox prefix
	// (nats.CustomInboxPrefix): an agent may subscribe there and nowhere
	// else, so it cannot watch other agents' acknowledgements.
	AgentInboxPrefix = "_INBOX."
	// internalInboxPrefix is the inbox of the collector's own connection.
	// It lies outside _INBOX.> so that no client allowed to subscribe to
	// reply subjects can read the batches the ingest consumer fetches.
	internalInboxPrefix = "_CS_INTERNAL"
	// internalUser names the collector's own connection.
	internalUser = "collector"
	// anonymousUser names the unauthenticated clients of development mode.
	anonymousUser = "anonymous"
	// tokenUserPrefix + <token-name> names a client that authenticated
	// with a token (an MQTT device, or a NATS client given one).
	tokenUserPrefix = "token:"
)

// Reasons a connection is refused: the label values of
// citysense_bus_auth_failures_total.
const (
	reasonNoCredentials = "no_credentials"
	reasonUnknownKey    = "unknown_key"
	reasonBadSignature  = "bad_signature"
	reasonBadToken      = "bad_token"
	reasonUnsupported   = "unsupported"
)

// authenticator is the server's CustomClientAuthentication. It consults
// Credentials on every connection, so enrollments and revocations apply
// to the next connection without touching the server's options.
type authenticator struct {
	creds Credentials
	// internalToken is the secret of the collector's own connection. A
	// token rather than an NKey: nats-server's ReloadOptions (AddRoutes)
	// closes every client that sent an NKey or a user name, since with a
	// CustomClientAuthentication it has no configured user to find them
	// in; a token-only client survives the reload.
	internalToken string
	loopbackOnly  bool // every client listener is on loopback
	log           *slog.Logger
	metrics       *busMetrics

	refusedLog limiter
	// dev is the development mode last reported, for logging changes.
	dev atomic.Bool
}

// devMode reports whether unauthenticated clients are accepted: only while
// every listener is on loopback and no agent is enrolled, so that a
// development setup needs no credentials and a deployed one cannot run
// without them by accident.
func (a *authenticator) devMode() bool {
	return a.loopbackOnly && a.creds.ActiveAgents() == 0
}

// Check decides on one client connection and registers its permissions.
// Credentials, when presented, must be valid even in development mode: a
// revoked agent must not slip in as anonymous.
func (a *authenticator) Check(c server.ClientAuthentication) bool {
	opts := c.GetOpts()
	switch {
	case a.isInternal(opts):
		// The collector's own connection: no permissions means all.
		c.RegisterUser(&server.User{Username: internalUser})
		return true
	case opts.JWT != "":
		// A JWT (or a file read as one) is not how CitySense enrolls;
		// the agent must load its creds with nats.NkeyOptionFromSeed.
		return a.refuse(c, reasonUnsupported, "JWT credentials are not supported; load the agent's creds file as an NKey seed")
	case opts.Nkey != "":
		return a.checkNkey(c, opts)
	case opts.Token != "" || opts.Password != "":
		// nats.Token, a NATS user/password pair with the token as the
		// password, or an MQTT CONNECT, where the server copies the
		// password into Token.
		secret := opts.Token
		if secret == "" {
			secret = opts.Password
		}
		tok, ok := a.creds.VerifyToken(secret)
		if !ok {
			return a.refuse(c, reasonBadToken, "unknown or revoked token")
		}
		c.RegisterUser(&server.User{Username: tokenUserPrefix + tok.Name, Permissions: a.devicePermissions()})
		a.metrics.accepted("token")
		return true
	case a.devMode():
		c.RegisterUser(&server.User{Username: anonymousUser, Permissions: anonymousPermissions()})
		a.metrics.accepted("anonymous")
		return true
	default:
		return a.refuse(c, reasonNoCredentials, "no credentials; enroll the agent with `citysense-collector agent add`")
	}
}

func (a *authenticator) checkNkey(c server.ClientAuthentication, opts *server.ClientOpts) bool {
	// nats.go sends the signature in raw URL encoding; older clients in
	// standard encoding, which nats-server accepts as well.
	sig, err := base64.RawURLEncoding.DecodeString(opts.Sig)
	if err != nil {
		if sig, err = base64.StdEncoding.DecodeString(opts.Sig); err != nil {
			return a.refuse(c, reasonBadSignature, "signature is not base64")
		}
	}
	if !nkeys.IsValidPublicUserKey(opts.Nkey) {
		return a.refuse(c, reasonUnknownKey, "not an NKey user public key")
	}
	pub, err := nkeys.FromPublicKey(opts.Nkey)
	if err != nil {
		return a.refuse(c, reasonUnknownKey, "not an NKey user public key")
	}
	nonce := c.GetNonce()
	if len(nonce) == 0 || pub.Verify(nonce, sig) != nil {
		return a.refuse(c, reasonBadSignature, "signature does not verify")
	}
	agent, ok := a.creds.AgentByKey(opts.Nkey)
	if !ok {
		return a.refuse(c, reasonUnknownKey, "key is not enrolled or was revoked")
	}
	// nats-server reports an NKey client by its key whatever the user
	// name; the name is for the server's events.
	c.RegisterUser(&server.User{Username: "agent:" + agent.ID, Permissions: agentPermissions(agent.ID)})
	a.metrics.accepted("agent")
	a.log.Debug("nats: agent connected", "agent", agent.ID, "remote", addr(c.RemoteAddress()))
	return true
}

// isInternal reports whether the client is the collector's own
// connection: the internal token and nothing else.
func (a *authenticator) isInternal(opts *server.ClientOpts) bool {
	return a.internalToken != "" && opts.Nkey == "" && opts.Username == "" && opts.JWT == "" &&
		subtle.ConstantTimeCompare([]byte(opts.Token), []byte(a.internalToken)) == 1
}

func (a *authenticator) refuse(c server.ClientAuthentication, reason, detail string) bool {
	a.metrics.authFailure(reason)
	if ok, suppressed := a.refusedLog.allow(time.Now()); ok {
		args := []any{"reason", reason, "detail", detail, "remote", addr(c.RemoteAddress()), "suppressed", suppressed}
		if nk := c.GetOpts().Nkey; nk != "" {
			args = append(args, "public_key", nk)
		}
		a.log.Warn("nats: connection refused", args...)
	}
	return false
}

// agentPermissions let an agent publish its own batches and nothing else;
// its subscription to its own inbox, _INBOX.<id>.>, is what receives
// JetStream's PubAck.
func agentPermissions(id string) *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{subjectRawPrefix + id}},
		Subscribe: &server.SubjectPermission{Allow: []string{AgentInboxPrefix + id + ".>"}},
	}
}

// devicePermissions are those of a token client (an MQTT device publishing
// to cs/raw/<device>): any single-token subject under cs.raw. except the
// enrolled agents' subjects and the write API's, which must not be
// impersonated. The list is fixed at connect time; an agent enrolled later
// is protected from connections made after its enrollment.
func (a *authenticator) devicePermissions() *server.Permissions {
	deny := []string{subjectRawPrefix + auth.ReservedAgentID}
	for _, ag := range a.creds.Agents() {
		deny = append(deny, subjectRawPrefix+ag.ID)
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{subjectRawPrefix + "*"}, Deny: deny},
		Subscribe: &server.SubjectPermission{Allow: []string{clientInbox}},
	}
}

// anonymousPermissions are those of development mode: publish raw batches
// under any name, receive replies; the streams themselves stay out of reach.
func anonymousPermissions() *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{subjectRawPrefix + ">"}},
		Subscribe: &server.SubjectPermission{Allow: []string{clientInbox}},
	}
}

// stillValid returns why the connection of a client that authenticated as
// user must be closed now, or "" when it may stay. user is what nats-server
// reports as the authorised user: the NKey for NKey users, the name given
// with RegisterUser otherwise.
func (a *authenticator) stillValid(user string) string {
	switch {
	case user == internalUser:
		return ""
	case user == anonymousUser:
		if !a.devMode() {
			return "development mode ended"
		}
	case strings.HasPrefix(user, tokenUserPrefix):
		if !a.creds.TokenActive(strings.TrimPrefix(user, tokenUserPrefix)) {
			return "token revoked"
		}
	case nkeys.IsValidPublicUserKey(user):
		if _, ok := a.creds.AgentByKey(user); !ok {
			return "agent revoked"
		}
	}
	return ""
}

func addr(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// busMetrics are the bus's metrics, on their own set.
type busMetrics struct {
	set        *metrics.Set
	violations *metrics.Counter
	// routesAdded counts routes AddRoutes added; cluster mode only.
	routesAdded *metrics.Counter
}

func newBusMetrics(devMode func() bool) *busMetrics {
	m := &busMetrics{set: metrics.NewSet()}
	// Every series exists from the start, at 0, so that a rate() over
	// them sees the first failure.
	for _, r := range []string{reasonNoCredentials, reasonUnknownKey, reasonBadSignature, reasonBadToken, reasonUnsupported} {
		m.set.GetOrCreateCounter(`citysense_bus_auth_failures_total{reason="` + r + `"}`)
	}
	m.violations = m.set.NewCounter("citysense_bus_permission_violations_total")
	m.set.NewGauge("citysense_bus_dev_mode", func() float64 {
		if devMode() {
			return 1
		}
		return 0
	})
	for _, kind := range []string{"agent", "token", "anonymous"} {
		m.set.GetOrCreateCounter(`citysense_bus_connections_accepted_total{kind="` + kind + `"}`)
	}
	return m
}

// authFailure counts a refused connection; reason is one of the fixed
// reason constants, so the number of series stays bounded.
func (m *busMetrics) authFailure(reason string) {
	m.set.GetOrCreateCounter(`citysense_bus_auth_failures_total{reason="` + reason + `"}`).Inc()
}

func (m *busMetrics) accepted(kind string) {
	m.set.GetOrCreateCounter(`citysense_bus_connections_accepted_total{kind="` + kind + `"}`).Inc()
}

// limiter lets one log line through per interval and counts the rest, so
// that a flood of refused connections is visible without drowning the log.
// It is safe for concurrent use.
type limiter struct {
	every time.Duration

	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// allow reports whether to log now and how many lines were suppressed since
// the last one that was.
func (l *limiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.next, l.suppressed = now.Add(l.every), 0
	return true, n
}

// loopbackHost reports whether a listener on host accepts loopback
// connections only.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Interface guards.
var (
	_ server.Authentication = (*authenticator)(nil)
	_ Credentials           = noCredentials{}
)
