package mqtt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// writeCert writes a certificate signed by parent (self-signed when nil) and
// its key, and returns the certificate, key and file paths.
func writeCert(t *testing.T, dir, name string, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kb, _ := x509.MarshalECPrivateKey(key)
	cp, kp := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	os.WriteFile(cp, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(kp, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o644) // test keys, read by the broker's user
	return cert, key, cp, kp
}

// TestInput_Run_mosquittoTLS: a broker that requires a client certificate
// signed by the test CA and a username/password.
func TestInput_Run_mosquittoTLS(t *testing.T) {
	bin := needPeer(t, "/usr/sbin/mosquitto")
	passwd := needPeer(t, "mosquitto_passwd")
	// mosquitto started as root drops to the mosquitto user before it reads
	// the password file and the certificates.
	dir, err := os.MkdirTemp("", "citysense-mqtt-tls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca, caKey, caPath, _ := writeCert(t, dir, "ca", &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	_, _, srvCert, srvKey := writeCert(t, dir, "server", &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, caKey)
	_, _, cliCert, cliKey := writeCert(t, dir, "client", &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "gw-1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, caKey)
	pwFile := filepath.Join(dir, "passwd")
	if out, err := exec.Command(passwd, "-c", "-b", pwFile, "gw", "s3cret").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	os.Chmod(pwFile, 0o644)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "mosquitto.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`listener %s 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
allow_anonymous false
password_file %s
persistence false
log_dest stderr
`, port, caPath, srvCert, srvKey, pwFile)), 0o600)
	cmd := exec.Command(bin, "-c", conf)
	logPath := filepath.Join(dir, "log")
	logf, _ := os.Create(logPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("mosquitto log:\n%s", b)
		}
	})
	waitUntil(t, "mosquitto", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	in := New()
	in.Broker = "ssl://" + addr
	in.Username, in.Password = "gw", "s3cret"
	in.TLS = TLS{CA: caPath, Cert: cliCert, Key: cliKey}
	in.Topics = []Topic{{Filter: "t/+", Template: "t/{station}", Format: "value", Field: "v"}}
	acc := &collect{}
	stop := runInput(t, in, acc)
	defer stop()
	pubTLS := func() {
		out, err := exec.Command(needPeer(t, "mosquitto_pub"), "-h", "127.0.0.1", "-p", port, "--cafile", caPath, "--cert", cliCert, "--key", cliKey,
			"-u", "gw", "-P", "s3cret", "-q", "1", "-t", "t/s1", "-m", "7.5").CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub: %v: %s", err, out)
		}
	}
	waitUntil(t, "a message over TLS", func() bool {
		pubTLS()
		time.Sleep(50 * time.Millisecond)
		return len(acc.snapshot()) > 0
	})
	p := acc.snapshot()[0]
	if v, _ := p.Field("v"); p.Measurement != "mqtt" || v.FloatV() != 7.5 || len(p.Tags) != 1 || p.Tags[0].Value != "s1" {
		t.Fatalf("got %v", p)
	}
}
