package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/citysense/citysense/collector/internal/auth"
)

// Credentials is the agent and token registry behind the admin API and the
// token check of the write endpoints. auth.Credentials is one; its methods
// are safe for concurrent use.
type Credentials interface {
	VerifyToken(secret string) (auth.Token, bool)
	Agents() []auth.Agent
	AddAgent(id string) (auth.Agent, []byte, error)
	RevokeAgent(id string) (auth.Agent, error)
	Tokens() []auth.Token
	AddToken(name string, admin bool) (string, auth.Token, error)
	RevokeToken(name string) (auth.Token, error)
}

// maxAdminBody bounds an admin request body; the largest is a token name.
const maxAdminBody = 64 << 10

// agentJSON is an agent as the admin API shows it.
type agentJSON struct {
	ID        string     `json:"id"`
	PublicKey string     `json:"public_key"`
	Created   time.Time  `json:"created"`
	Revoked   *time.Time `json:"revoked"`
	// Creds is the credentials file, in the answer to its creation only.
	Creds string `json:"creds,omitempty"`
}

// tokenJSON is a token as the admin API shows it: never its hash.
type tokenJSON struct {
	Name    string     `json:"name"`
	Admin   bool       `json:"admin"`
	Created time.Time  `json:"created"`
	Revoked *time.Time `json:"revoked"`
	// Token is the secret, in the answer to its creation only.
	Token string `json:"token,omitempty"`
}

func agentView(a auth.Agent) agentJSON {
	return agentJSON{ID: a.ID, PublicKey: a.PublicKey, Created: a.Created, Revoked: a.Revoked}
}

func tokenView(t auth.Token) tokenJSON {
	return tokenJSON{Name: t.Name, Admin: t.Admin, Created: t.Created, Revoked: t.Revoked}
}

// admin wraps an admin handler with the bearer-token check: 401 without a
// valid token, 403 with a token that is not an admin token.
func (a *API) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		scheme, secret, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		var tok auth.Token
		ok := false
		if a.opts.Credentials != nil && strings.EqualFold(scheme, "Bearer") {
			tok, ok = a.opts.Credentials.VerifyToken(strings.TrimSpace(secret))
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="citysense-admin"`)
			writeError(w, http.StatusUnauthorized, "a valid admin token is required: Authorization: Bearer TOKEN")
			return
		}
		if !tok.Admin {
			writeError(w, http.StatusForbidden, "token "+tok.Name+" is not an admin token")
			return
		}
		a.log.Info("api: admin request", "method", r.Method, "path", r.URL.Path, "token", tok.Name)
		h(w, r)
	}
}

func (a *API) listAgents(w http.ResponseWriter, r *http.Request) {
	agents := a.opts.Credentials.Agents()
	out := struct {
		Agents []agentJSON `json:"agents"`
	}{Agents: make([]agentJSON, 0, len(agents))}
	for _, ag := range agents {
		out.Agents = append(out.Agents, agentView(ag))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) addAgent(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ID string `json:"id"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	ag, creds, err := a.opts.Credentials.AddAgent(in.ID)
	if err != nil {
		a.credError(w, err)
		return
	}
	out := agentView(ag)
	out.Creds = string(creds)
	writeJSON(w, http.StatusCreated, out)
}

func (a *API) revokeAgent(w http.ResponseWriter, r *http.Request) {
	ag, err := a.opts.Credentials.RevokeAgent(r.PathValue("id"))
	if err != nil {
		a.credError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, agentView(ag))
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) {
	tokens := a.opts.Credentials.Tokens()
	out := struct {
		Tokens []tokenJSON `json:"tokens"`
	}{Tokens: make([]tokenJSON, 0, len(tokens))}
	for _, t := range tokens {
		out.Tokens = append(out.Tokens, tokenView(t))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) addToken(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name  string `json:"name"`
		Admin bool   `json:"admin"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	secret, tok, err := a.opts.Credentials.AddToken(in.Name, in.Admin)
	if err != nil {
		a.credError(w, err)
		return
	}
	out := tokenView(tok)
	out.Token = secret
	writeJSON(w, http.StatusCreated, out)
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) {
	tok, err := a.opts.Credentials.RevokeToken(r.PathValue("name"))
	if err != nil {
		a.credError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, tokenView(tok))
}

// methodNotAllowed answers 405 in the API's JSON, naming the methods the
// path takes.
func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use "+strings.ReplaceAll(allow, ", ", " or "))
	}
}

// readJSON decodes a small JSON object strictly; false means it answered.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "body: more than one JSON value")
		return false
	}
	return true
}

func (a *API) credError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, auth.ErrInvalidName), errors.Is(err, auth.ErrReserved):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, auth.ErrExists):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, auth.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	default:
		a.log.Error("api: admin: credentials change failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// clusterStatus answers GET /admin/v1/cluster: the members, the partition
// owners and the replication state, as the cluster reports them.
func (a *API) clusterStatus(w http.ResponseWriter, r *http.Request) {
	if a.opts.ClusterStatus == nil {
		writeError(w, http.StatusNotFound, "this collector runs as a single node: no cluster block in its configuration")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	st, err := a.opts.ClusterStatus(ctx)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "cluster status: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, st)
}
