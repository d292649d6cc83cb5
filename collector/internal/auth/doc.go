// Package auth owns the collector's credentials: the enrolled agents
// (DATA/agents.json, one NKey user each) and the API tokens
// (DATA/tokens.json, stored only as SHA-256 hashes).
//
// # Basics
//
// Open loads both files from the data directory. The CLI
// (`citysense-collector agent|token ...`), the admin API and the running
// collector all change them through the same methods, which take an
// exclusive file lock, re-read the file, apply the change and replace the
// file atomically (temporary file, fsync, rename, fsync of the directory).
// A running collector calls Watch, which polls the files' identity, size
// and modification time every second and reloads what changed, so an
// agent enrolled or revoked from the command line takes effect without a
// restart.
//
// Readers (AgentByKey, VerifyToken, ...) never block: they see an
// immutable snapshot, swapped atomically on every change. They are called
// from nats-server's connection goroutines and from HTTP handlers.
//
// # Caveats
//
// A file that cannot be parsed at Open is an error. A file that breaks
// while the collector runs is logged at error level and ignored: the last
// good state stays in force until the file is fixed. A file that
// disappears means "nobody enrolled", as it would after a restart.
//
// An agent's seed (its private key) is returned once by AddAgent and never
// stored by the collector; agents.json holds public keys only.
//
// It must not import the collector's runtime packages (bus, ingest, store,
// api): they consume it through their own narrow interfaces.
package auth
