package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/citysense/citysense/internal/cli"
)

// File names inside the data directory.
const (
	AgentsFile = "agents.json"
	TokensFile = "tokens.json"
	CredsDir   = "agents" // DATA/agents/<id>.creds, written by the CLI
)

// TokenPrefix starts every token, so that one pasted into the wrong place
// (a log, a repository) is recognisable and can be searched for.
const TokenPrefix = "cs_"

// ReservedAgentID is the subject token of the Influx write API
// (cs.raw.http.<token>); an agent with this id would share its subject.
const ReservedAgentID = "http"

// Errors returned by the mutating methods.
var (
	// ErrInvalidName: an agent id or token name outside [A-Za-z0-9_-]{1,64}.
	ErrInvalidName = errors.New("want 1 to 64 of A-Z a-z 0-9 _ -")
	// ErrReserved: the agent id is used by the collector itself.
	ErrReserved = errors.New("reserved")
	// ErrExists: an active agent or token already has this name.
	ErrExists = errors.New("already exists")
	// ErrNotFound: no agent or token has this name.
	ErrNotFound = errors.New("not found")
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidName reports whether s may be an agent id or a token name: both end
// up as a NATS subject token, where '.', '*', '>' and spaces are syntax.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Agent is one enrolled agent.
type Agent struct {
	ID        string     `json:"id"`
	PublicKey string     `json:"public_key"` // NKey user public key, "U..."
	Created   time.Time  `json:"created"`
	Revoked   *time.Time `json:"revoked,omitempty"`
}

// Active reports whether the agent may connect.
func (a Agent) Active() bool { return a.Revoked == nil }

// Token is one API token. The secret itself is never stored.
type Token struct {
	Name    string     `json:"name"`
	Admin   bool       `json:"admin"`  // may use /admin/v1/
	Hash    string     `json:"sha256"` // hex SHA-256 of the secret
	Created time.Time  `json:"created"`
	Revoked *time.Time `json:"revoked,omitempty"`
}

// Active reports whether the token is accepted.
func (t Token) Active() bool { return t.Revoked == nil }

// fileVersion is written into both files so that a later format can be
// told apart.
const fileVersion = 1

type agentsDoc struct {
	Version int     `json:"version"`
	Agents  []Agent `json:"agents"`
}

type tokensDoc struct {
	Version int     `json:"version"`
	Tokens  []Token `json:"tokens"`
}

type agentIndex struct {
	byKey  map[string]Agent // active agents only
	active int
}

type tokenIndex struct {
	active []tokenHash // active tokens, for VerifyToken
	byName map[string]Token
}

type tokenHash struct {
	sum [sha256.Size]byte
	tok Token
}

// Credentials is the agent and token registry of one data directory. It is
// safe for concurrent use.
type Credentials struct {
	log    *slog.Logger
	agents *registry[Agent, agentIndex]
	tokens *registry[Token, tokenIndex]
	// changed is signalled after every change made in this process, so
	// Watch passes it on without waiting for its next poll.
	changed chan struct{}
	now     func() time.Time
}

// Open loads DATA/agents.json and DATA/tokens.json; missing files (or a
// missing dataDir) mean nobody is enrolled. The first change creates them.
// A nil log discards.
func Open(dataDir string, log *slog.Logger) (*Credentials, error) {
	if log == nil {
		log = cli.Discard()
	}
	log = log.With("component", "auth")
	c := &Credentials{log: log, changed: make(chan struct{}, 1), now: time.Now}
	c.agents = &registry[Agent, agentIndex]{
		path: filepath.Join(dataDir, AgentsFile), what: "agents", log: log,
		decode: decodeAgents, encode: encodeAgents, index: indexAgents,
		cmp: func(a, b Agent) int { return strings.Compare(a.ID, b.ID) },
	}
	c.tokens = &registry[Token, tokenIndex]{
		path: filepath.Join(dataDir, TokensFile), what: "tokens", log: log,
		decode: decodeTokens, encode: encodeTokens, index: indexTokens,
		cmp: func(a, b Token) int { return strings.Compare(a.Name, b.Name) },
	}
	if err := c.agents.load(); err != nil {
		return nil, err
	}
	if err := c.tokens.load(); err != nil {
		return nil, err
	}
	return c, nil
}

// Watch polls both files every interval until ctx is done and calls
// onChange (from Watch's goroutine) after each change, whether it was read
// from a file or made through this Credentials.
func (c *Credentials) Watch(ctx context.Context, every time.Duration, onChange func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if c.Reload() && onChange != nil {
				onChange()
			}
		case <-c.changed:
			if onChange != nil {
				onChange()
			}
		}
	}
}

// Reload re-reads the files that changed on disk and reports whether
// anything did.
func (c *Credentials) Reload() bool {
	a := c.agents.reload()
	t := c.tokens.reload()
	return a || t
}

func (c *Credentials) notify() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// Agents returns every agent, revoked ones included, sorted by id.
func (c *Credentials) Agents() []Agent {
	return slices.Clone(c.agents.view().items)
}

// AgentByKey returns the active agent with the NKey public key pub.
func (c *Credentials) AgentByKey(pub string) (Agent, bool) {
	a, ok := c.agents.view().idx.byKey[pub]
	return a, ok
}

// ActiveAgents is the number of agents that are not revoked.
func (c *Credentials) ActiveAgents() int { return c.agents.view().idx.active }

// AddAgent enrolls an agent with a new NKey user and returns its record
// and the content of its credentials file (see FormatCreds). The seed is
// not kept anywhere else: lose the file and the agent must be enrolled
// again. An id whose agent was revoked may be enrolled again, with a new key.
func (c *Credentials) AddAgent(id string) (Agent, []byte, error) {
	if !ValidName(id) {
		return Agent{}, nil, fmt.Errorf("agent id %q: %w", id, ErrInvalidName)
	}
	if id == ReservedAgentID {
		return Agent{}, nil, fmt.Errorf("agent id %q: %w for the Influx write API's subject cs.raw.http.*", id, ErrReserved)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return Agent{}, nil, fmt.Errorf("create nkey: %w", err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return Agent{}, nil, fmt.Errorf("create nkey: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return Agent{}, nil, fmt.Errorf("create nkey: %w", err)
	}
	defer wipe(seed)
	agent := Agent{ID: id, PublicKey: pub, Created: c.now().UTC().Truncate(time.Second)}
	err = c.agents.update(func(agents []Agent) ([]Agent, error) {
		out := make([]Agent, 0, len(agents)+1)
		for _, a := range agents {
			if a.ID == id {
				if a.Active() {
					return nil, fmt.Errorf("agent %q: %w (revoke it first to issue a new key)", id, ErrExists)
				}
				continue // replaced by the new enrollment
			}
			out = append(out, a)
		}
		return append(out, agent), nil
	})
	if err != nil {
		return Agent{}, nil, err
	}
	c.log.Info("agent enrolled", "agent", id, "public_key", pub)
	c.notify()
	return agent, FormatCreds(agent, seed), nil
}

// RevokeAgent revokes an agent: from the next check on (at most a second
// later in a running collector) it can no longer connect, and its open
// connections are closed. Revoking a revoked agent changes nothing.
func (c *Credentials) RevokeAgent(id string) (Agent, error) {
	var got Agent
	err := c.agents.update(func(agents []Agent) ([]Agent, error) {
		out := slices.Clone(agents)
		for i, a := range out {
			if a.ID == id {
				if a.Active() {
					t := c.now().UTC().Truncate(time.Second)
					out[i].Revoked = &t
				}
				got = out[i]
				return out, nil
			}
		}
		return nil, fmt.Errorf("agent %q: %w", id, ErrNotFound)
	})
	if err != nil {
		return Agent{}, err
	}
	c.log.Info("agent revoked", "agent", id, "public_key", got.PublicKey)
	c.notify()
	return got, nil
}

// FormatCreds returns the credentials file of an agent: the decorated
// NKey user seed that nats.NkeyOptionFromSeed (and nkeys.ParseDecoratedNKey)
// reads, after a comment saying what it is.
func FormatCreds(a Agent, seed []byte) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# CitySense agent credentials for %q, issued %s.\n", a.ID, a.Created.Format(time.RFC3339))
	fmt.Fprintf(&b, "# Public key: %s\n", a.PublicKey)
	b.WriteString("#\n")
	b.WriteString("# The NKey seed below is the agent's private key: keep this file secret\n")
	b.WriteString("# (mode 0600) and only on the gateway. The agent loads it with\n")
	b.WriteString("# nats.NkeyOptionFromSeed (outputs[].creds in agent.yaml) and signs the\n")
	b.WriteString("# collector's connection nonce with it; the seed itself never leaves the\n")
	b.WriteString("# gateway. Revoke with: citysense-collector agent revoke " + a.ID + "\n")
	b.WriteString("\n-----BEGIN USER NKEY SEED-----\n")
	b.Write(seed)
	b.WriteString("\n------END USER NKEY SEED------\n")
	return []byte(b.String())
}

// Tokens returns every token, revoked ones included, sorted by name.
func (c *Credentials) Tokens() []Token {
	return slices.Clone(c.tokens.view().items)
}

// AddToken creates a token and returns its secret, which is shown once:
// only its hash is stored.
func (c *Credentials) AddToken(name string, admin bool) (string, Token, error) {
	if !ValidName(name) {
		return "", Token{}, fmt.Errorf("token name %q: %w", name, ErrInvalidName)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", Token{}, fmt.Errorf("create token: %w", err)
	}
	secret := TokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(secret))
	tok := Token{Name: name, Admin: admin, Hash: hex.EncodeToString(sum[:]), Created: c.now().UTC().Truncate(time.Second)}
	err := c.tokens.update(func(tokens []Token) ([]Token, error) {
		out := make([]Token, 0, len(tokens)+1)
		for _, t := range tokens {
			if t.Name == name {
				if t.Active() {
					return nil, fmt.Errorf("token %q: %w (revoke it first to issue a new one)", name, ErrExists)
				}
				continue
			}
			out = append(out, t)
		}
		return append(out, tok), nil
	})
	if err != nil {
		return "", Token{}, err
	}
	c.log.Info("token created", "token", name, "admin", admin)
	c.notify()
	return secret, tok, nil
}

// RevokeToken revokes a token; revoking a revoked token changes nothing.
func (c *Credentials) RevokeToken(name string) (Token, error) {
	var got Token
	err := c.tokens.update(func(tokens []Token) ([]Token, error) {
		out := slices.Clone(tokens)
		for i, t := range out {
			if t.Name == name {
				if t.Active() {
					now := c.now().UTC().Truncate(time.Second)
					out[i].Revoked = &now
				}
				got = out[i]
				return out, nil
			}
		}
		return nil, fmt.Errorf("token %q: %w", name, ErrNotFound)
	})
	if err != nil {
		return Token{}, err
	}
	c.log.Info("token revoked", "token", name)
	c.notify()
	return got, nil
}

// VerifyToken returns the active token whose secret this is. It compares
// the secret's hash with every active token's in constant time and does
// not stop at a match, so the time taken says nothing about which token,
// or how much of one, matched.
func (c *Credentials) VerifyToken(secret string) (Token, bool) {
	if secret == "" {
		return Token{}, false
	}
	sum := sha256.Sum256([]byte(secret))
	var found Token
	ok := 0
	for _, t := range c.tokens.view().idx.active {
		if subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 {
			found, ok = t.tok, 1
		}
	}
	return found, ok == 1
}

// TokenActive reports whether a token of that name exists and is not revoked.
func (c *Credentials) TokenActive(name string) bool {
	t, ok := c.tokens.view().idx.byName[name]
	return ok && t.Active()
}

func decodeAgents(data []byte) ([]Agent, error) {
	var doc agentsDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Version != fileVersion {
		return nil, fmt.Errorf("version %d, want %d", doc.Version, fileVersion)
	}
	seen := map[string]bool{}
	for i, a := range doc.Agents {
		switch {
		case !ValidName(a.ID):
			return nil, fmt.Errorf("agent %d: id %q: %w", i, a.ID, ErrInvalidName)
		case seen[a.ID]:
			return nil, fmt.Errorf("agent %d: id %q listed twice", i, a.ID)
		case !nkeys.IsValidPublicUserKey(a.PublicKey):
			return nil, fmt.Errorf("agent %q: %q is not an NKey user public key", a.ID, a.PublicKey)
		}
		seen[a.ID] = true
	}
	slices.SortFunc(doc.Agents, func(a, b Agent) int { return strings.Compare(a.ID, b.ID) })
	return doc.Agents, nil
}

func encodeAgents(agents []Agent) ([]byte, error) {
	agents = slices.Clone(agents)
	slices.SortFunc(agents, func(a, b Agent) int { return strings.Compare(a.ID, b.ID) })
	if agents == nil {
		agents = []Agent{}
	}
	b, err := json.MarshalIndent(agentsDoc{Version: fileVersion, Agents: agents}, "", "  ")
	return append(b, '\n'), err
}

func indexAgents(agents []Agent) agentIndex {
	idx := agentIndex{byKey: make(map[string]Agent, len(agents))}
	for _, a := range agents {
		if a.Active() {
			idx.byKey[a.PublicKey] = a
			idx.active++
		}
	}
	return idx
}

func decodeTokens(data []byte) ([]Token, error) {
	var doc tokensDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Version != fileVersion {
		return nil, fmt.Errorf("version %d, want %d", doc.Version, fileVersion)
	}
	seen := map[string]bool{}
	for i, t := range doc.Tokens {
		sum, err := hex.DecodeString(t.Hash)
		switch {
		case !ValidName(t.Name):
			return nil, fmt.Errorf("token %d: name %q: %w", i, t.Name, ErrInvalidName)
		case seen[t.Name]:
			return nil, fmt.Errorf("token %d: name %q listed twice", i, t.Name)
		case err != nil || len(sum) != sha256.Size:
			return nil, fmt.Errorf("token %q: sha256 is not 64 hex digits", t.Name)
		}
		seen[t.Name] = true
	}
	slices.SortFunc(doc.Tokens, func(a, b Token) int { return strings.Compare(a.Name, b.Name) })
	return doc.Tokens, nil
}

func encodeTokens(tokens []Token) ([]byte, error) {
	tokens = slices.Clone(tokens)
	slices.SortFunc(tokens, func(a, b Token) int { return strings.Compare(a.Name, b.Name) })
	if tokens == nil {
		tokens = []Token{}
	}
	b, err := json.MarshalIndent(tokensDoc{Version: fileVersion, Tokens: tokens}, "", "  ")
	return append(b, '\n'), err
}

func indexTokens(tokens []Token) tokenIndex {
	idx := tokenIndex{byName: make(map[string]Token, len(tokens))}
	for _, t := range tokens {
		idx.byName[t.Name] = t
		if !t.Active() {
			continue
		}
		var th tokenHash
		hex.Decode(th.sum[:], []byte(t.Hash)) // checked by decodeTokens, or made by AddToken
		th.tok = t
		idx.active = append(idx.active, th)
	}
	return idx
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 'x'
	}
}
