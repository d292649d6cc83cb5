package uplink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/citysense/citysense/agent/internal/buffer"
	"github.com/citysense/citysense/protocols"
)

func natsConfig(url string) Config {
	return Config{
		ID: "nats", Type: TypeNATS, AgentID: agentID,
		Timeout:    2 * time.Second,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		BackfillRate: -1,
		NATS:         NATSConfig{URL: url, ReconnectWait: 50 * time.Millisecond},
	}
}

// streamMsgs returns every message of the stream, in stream order.
func streamMsgs(t *testing.T, url string, opts ...nats.Option) []*jetstream.RawStreamMsg {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "CS_RAW")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get stream seq %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

// checkStream asserts the stream holds batches 1..n exactly once, with the
// contract's subject, headers and bodies.
func checkStream(t *testing.T, url string, n int, opts ...nats.Option) {
	t.Helper()
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	msgs := streamMsgs(t, url, opts...)
	seen := map[string]bool{}
	for _, m := range msgs {
		id := m.Header.Get(jetstream.MsgIDHeader)
		if seen[id] {
			t.Fatalf("message %s stored twice", id)
		}
		seen[id] = true
		if m.Subject != "cs.raw."+agentID || m.Header.Get("Content-Encoding") != "zstd" {
			t.Fatalf("message %s on %q with %v", id, m.Subject, m.Header)
		}
		i, err := strconv.Atoi(strings.TrimPrefix(id, agentID+"-"))
		if err != nil {
			t.Fatalf("message id %q: %v", id, err)
		}
		lp, err := dec.DecodeAll(m.Data, nil)
		if err != nil {
			t.Fatalf("message %s: %v", id, err)
		}
		pts, err := protocols.DecodeAll(lp, protocols.DecodeOptions{})
		if err != nil || !reflect.DeepEqual(pts, batch(i)) {
			t.Fatalf("message %s holds %v (%v), want %v", id, pts, err, batch(i))
		}
	}
	for i := 1; i <= n; i++ {
		if !seen[MsgID(agentID, uint64(i))] {
			t.Fatalf("batch %d missing from the stream (%d messages)", i, len(msgs))
		}
	}
	if len(msgs) != n {
		t.Fatalf("stream holds %d messages, want %d", len(msgs), n)
	}
}

func TestNATS_Run_jetStream(t *testing.T) {
	srv := startServer(t, t.TempDir(), -1)
	url := srv.ClientURL()
	createStream(t, url)
	b := openBuffer(t)
	appendBatches(t, b, 1, 5)
	o, err := New(natsConfig(url), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, o, b)
	appendBatches(t, b, 6, 8) // live, while the backlog 1..5 drains
	waitFor(t, "the buffer to drain", func() bool { return pending(b, "nats") == 0 })
	if !o.Connected() {
		t.Error("Connected() = false while sending")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkStream(t, url, 8)
	if st := o.Stats(); st.BatchesSent != 8 || st.PointsSent != 24 || st.Duplicates != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNATS_Run_resendIsDeduplicated(t *testing.T) {
	srv := startServer(t, t.TempDir(), -1)
	url := srv.ClientURL()
	createStream(t, url)
	b := openBuffer(t)
	appendBatches(t, b, 1, 5)

	// An earlier run published batches 1–3 and died before recording them.
	bs, _ := b.Read("nats", 0, 4, 3, 1<<20)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	tc, err := buffer.NewTranscoder()
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	for _, e := range bs {
		m := nats.NewMsg("cs.raw." + agentID)
		m.Header.Set(jetstream.MsgIDHeader, MsgID(agentID, e.Seq))
		m.Header.Set("Content-Encoding", "zstd")
		if m.Data, err = tc.Wire(&e); err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	nc.Close()

	o, _ := New(natsConfig(url), nil, nil)
	stop := start(t, o, b)
	waitFor(t, "the buffer to drain", func() bool { return pending(b, "nats") == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkStream(t, url, 5)
	if st := o.Stats(); st.BatchesSent != 5 || st.Duplicates != 3 {
		t.Fatalf("stats %+v, want 5 sent of which 3 duplicates", st)
	}
}

func TestNATS_Run_serverRestart(t *testing.T) {
	store := t.TempDir()
	srv := startServer(t, store, -1)
	url := srv.ClientURL()
	createStream(t, url)
	b := openBuffer(t)
	o, _ := New(natsConfig(url), nil, nil)
	stop := start(t, o, b)

	// A writer keeps appending while the server goes away and comes back.
	const total = 30
	written := make(chan struct{})
	go func() {
		defer close(written)
		for i := 1; i <= total; i++ {
			if err := b.Append(context.Background(), batch(i)); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	waitFor(t, "some batches sent", func() bool { return o.Stats().BatchesSent >= 5 })
	srv.Shutdown()
	srv.WaitForShutdown()
	waitFor(t, "the output to notice", func() bool { return !o.Connected() })
	startServer(t, store, clientPort(t, url))

	<-written
	waitFor(t, "the buffer to drain", func() bool { return pending(b, "nats") == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkStream(t, url, total)
	st := o.Stats()
	if st.BatchesSent < total || st.Reconnects == 0 {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("errors during the outage: %d, duplicates: %d, backlog points: %d", st.Errors, st.Duplicates, st.BacklogPoints)
}

func TestNATS_Run_nkeySeedCredentials(t *testing.T) {
	// What `citysense-collector agent add` issues: a decorated user seed.
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	creds := filepath.Join(t.TempDir(), "gw.nk")
	text := "-----BEGIN USER NKEY SEED-----\n" + string(seed) + "\n------END USER NKEY SEED------\n"
	if err := os.WriteFile(creds, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if kind, err := DetectCreds(creds); err != nil || kind != CredsNKeySeed {
		t.Fatalf("DetectCreds = %v, %v", kind, err)
	}
	srv := startServerOpts(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	url := srv.ClientURL()
	authed := func() nats.Option {
		opt, err := nats.NkeyOptionFromSeed(creds)
		if err != nil {
			t.Fatal(err)
		}
		return opt
	}
	createStream(t, url, authed())

	b := openBuffer(t)
	appendBatches(t, b, 1, 2)
	cfg := natsConfig(url)
	cfg.NATS.Creds = creds
	o, _ := New(cfg, nil, nil)
	stop := start(t, o, b)
	waitFor(t, "the buffer to drain", func() bool { return pending(b, "nats") == 0 })
	stop()
	checkStream(t, url, 2, authed())

	// Without the seed the server refuses; Run keeps the data and retries.
	b2 := openBuffer(t)
	appendBatches(t, b2, 1, 1)
	o2, _ := New(natsConfig(url), nil, nil)
	stop = start(t, o2, b2)
	time.Sleep(100 * time.Millisecond)
	stop()
	if pending(b2, "nats") != 1 || o2.Stats().BatchesSent != 0 {
		t.Fatalf("unauthenticated output delivered something: %+v", o2.Stats())
	}
}

func TestDetectCreds(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o600)
		return p
	}
	jwtCreds := write("user.creds", "-----BEGIN NATS USER JWT-----\neyJ0eXAi...\n------END NATS USER JWT------\n\n"+
		"-----BEGIN USER NKEY SEED-----\nSUAM...\n------END USER NKEY SEED------\n")
	if k, err := DetectCreds(jwtCreds); err != nil || k != CredsJWT {
		t.Fatalf("jwt creds: %v, %v", k, err)
	}
	if k, err := DetectCreds(write("bare.nk", "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY\n")); err != nil || k != CredsNKeySeed {
		t.Fatalf("bare seed: %v, %v", k, err)
	}
	if _, err := DetectCreds(write("junk", "hello")); err == nil {
		t.Fatal("junk accepted")
	}
	if _, err := DetectCreds(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing file accepted")
	}
}

// testCA makes a CA and a server certificate for 127.0.0.1 named
// "collector.test", written as PEM files.
func testCA(t *testing.T) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "collector.test"},
		DNSNames: []string{"collector.test"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER)
}

func TestNATS_Run_tls(t *testing.T) {
	caFile, certFile, keyFile := testCA(t)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServerOpts(t, &server.Options{
		TLS:       true,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	})
	url := srv.ClientURL()
	clientTLS := nats.Secure(&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test's own inspection client
	createStream(t, url, clientTLS)

	b := openBuffer(t)
	appendBatches(t, b, 1, 2)
	cfg := natsConfig(url)
	cfg.NATS.TLS = TLS{CA: caFile, ServerName: "collector.test"}
	o, _ := New(cfg, nil, nil)
	stop := start(t, o, b)
	waitFor(t, "the buffer to drain", func() bool { return pending(b, "nats") == 0 })
	stop()
	checkStream(t, url, 2, clientTLS)

	// The wrong server name is refused: the data stays.
	b2 := openBuffer(t)
	appendBatches(t, b2, 1, 1)
	cfg.NATS.TLS.ServerName = "impostor.test"
	o2, _ := New(cfg, nil, nil)
	stop = start(t, o2, b2)
	time.Sleep(100 * time.Millisecond)
	stop()
	if pending(b2, "nats") != 1 {
		t.Fatal("delivered over TLS to a server with the wrong name")
	}
}
