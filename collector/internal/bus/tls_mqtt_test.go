package bus

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files.
type testPKI struct {
	ca, serverCert, serverKey, clientCert, clientKey string
	// routeCert serves and dials NATS routes: server and client auth.
	routeCert, routeKey string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "citysense test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, name string, usage ...x509.ExtKeyUsage) (string, string) {
		k := key()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage,
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	p := testPKI{ca: write("ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = leaf(2, "server", x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf(3, "gw-a", x509.ExtKeyUsageClientAuth)
	p.routeCert, p.routeKey = leaf(4, "route", x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	return p
}

// With TLS and verify_clients, an agent needs the CA, a client certificate
// and its NKey; the collector's own in-process connection needs none.
func TestBus_Start_tls(t *testing.T) {
	pki := newTestPKI(t)
	b, _, credsPath := enrolled(t, Config{TLS: TLSConfig{
		CertFile: pki.serverCert, KeyFile: pki.serverKey, CAFile: pki.ca, VerifyClients: true,
	}})
	if !strings.HasPrefix(b.ClientURL(), "tls://") {
		t.Errorf("ClientURL = %s, want tls://", b.ClientURL())
	}
	if err := b.Ready(); err != nil {
		t.Fatalf("Ready = %v (the in-process connection must work under TLS)", err)
	}
	key, err := nats.NkeyOptionFromSeed(credsPath)
	if err != nil {
		t.Fatal(err)
	}
	// As an agent connects: its key, and replies in its own inbox.
	nkey := func(o *nats.Options) error {
		if err := key(o); err != nil {
			return err
		}
		return nats.CustomInboxPrefix(AgentInboxPrefix + "gw-a")(o)
	}
	plainURL := "nats://" + strings.TrimPrefix(b.ClientURL(), "tls://")
	tests := []struct {
		name string
		url  string
		opts []nats.Option
		ok   bool
	}{
		{"ca, client certificate and nkey", b.ClientURL(), []nats.Option{nats.RootCAs(pki.ca), nats.ClientCert(pki.clientCert, pki.clientKey), nkey}, true},
		{"no client certificate", b.ClientURL(), []nats.Option{nats.RootCAs(pki.ca), nkey}, false},
		{"server not trusted", b.ClientURL(), []nats.Option{nats.ClientCert(pki.clientCert, pki.clientKey), nkey}, false},
		{"certificate but no nkey", b.ClientURL(), []nats.Option{nats.RootCAs(pki.ca), nats.ClientCert(pki.clientCert, pki.clientKey)}, false},
		{"plain text", plainURL, []nats.Option{nkey}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, _, err := connect(t, tt.url, tt.opts...)
			if (err == nil) != tt.ok {
				t.Fatalf("connect: %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			if !nc.TLSRequired() {
				t.Error("connection is not TLS")
			}
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := js.Publish(ctx, "cs.raw.gw-a", []byte("over tls")); err != nil {
				t.Fatal(err)
			}
		})
	}
	if got := streamMsgs(t, b); !slices.Equal(got, []string{"cs.raw.gw-a over tls"}) {
		t.Errorf("CS_RAW holds %q", got)
	}
}

// mqttClient speaks just enough MQTT 3.1.1 for a device: CONNECT and a
// QoS 1 PUBLISH. A library would be one more dependency for two packets.
type mqttClient struct {
	conn net.Conn
	r    *bufio.Reader
}

func mqttDial(t *testing.T, url, clientID, password string) (*mqttClient, byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "mqtt://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var vh []byte
	vh = appendMQTTString(vh, "MQTT")
	flags := byte(0x02) // clean session
	if password != "" {
		flags |= 0x80 | 0x40 // user name and password
	}
	vh = append(vh, 4, flags, 0, 30) // level 3.1.1, keep-alive 30 s
	vh = appendMQTTString(vh, clientID)
	if password != "" {
		vh = appendMQTTString(vh, clientID)
		vh = appendMQTTString(vh, password)
	}
	c := &mqttClient{conn: conn, r: bufio.NewReader(conn)}
	c.write(t, 0x10, vh)
	typ, body := c.read(t)
	if typ != 0x20 || len(body) != 2 {
		t.Fatalf("CONNACK: type %#x body %v", typ, body)
	}
	return c, body[1]
}

func appendMQTTString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func (c *mqttClient) write(t *testing.T, header byte, body []byte) {
	t.Helper()
	pkt := []byte{header}
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		pkt = append(pkt, d)
		if n == 0 {
			break
		}
	}
	if _, err := c.conn.Write(append(pkt, body...)); err != nil {
		t.Fatal(err)
	}
}

func (c *mqttClient) read(t *testing.T) (byte, []byte) {
	t.Helper()
	typ, err := c.r.ReadByte()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	n, mult := 0, 1
	for {
		d, err := c.r.ReadByte()
		if err != nil {
			t.Fatal(err)
		}
		n += int(d&0x7f) * mult
		mult *= 128
		if d&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		t.Fatal(err)
	}
	return typ, body
}

// publish sends a QoS 1 PUBLISH and waits for its PUBACK.
func (c *mqttClient) publish(t *testing.T, topic string, pid uint16, payload string) {
	t.Helper()
	body := appendMQTTString(nil, topic)
	body = binary.BigEndian.AppendUint16(body, pid)
	c.write(t, 0x32, append(body, payload...))
	typ, ack := c.read(t)
	if typ != 0x40 || len(ack) != 2 || binary.BigEndian.Uint16(ack) != pid {
		t.Fatalf("PUBACK: type %#x body %v", typ, ack)
	}
}

// A device publishes line protocol over MQTT to cs/raw/<device> with a
// token as password; it lands in CS_RAW under cs.raw.<device>.
func TestBus_Start_mqtt(t *testing.T) {
	b, creds, _ := enrolled(t, Config{MQTTListen: "127.0.0.1:0"})
	if !strings.HasPrefix(b.MQTTURL(), "mqtt://127.0.0.1:") || strings.HasSuffix(b.MQTTURL(), ":0") {
		t.Fatalf("MQTTURL = %q", b.MQTTURL())
	}
	secret, _, err := creds.AddToken("devices", false)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, password string
		rc             byte // CONNACK return code: 0 accepted, 5 not authorised
	}{
		{"token", secret, 0},
		{"wrong token", "cs_nope", 5},
		{"no password", "", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, rc := mqttDial(t, b.MQTTURL(), "dev-"+fmt.Sprint(len(tt.password)), tt.password)
			if rc != tt.rc {
				t.Fatalf("CONNACK return code %d, want %d", rc, tt.rc)
			}
			if rc == 0 {
				c.publish(t, "cs/raw/dev-1", 1, "air,station=s9 pm25=3 1735689600000000000")
			}
		})
	}
	var got []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = streamMsgs(t, b); len(got) > 0 {
			break
		}
	}
	if want := []string{"cs.raw.dev-1 air,station=s9 pm25=3 1735689600000000000"}; !slices.Equal(got, want) {
		t.Errorf("CS_RAW holds %q, want %q", got, want)
	}
}
