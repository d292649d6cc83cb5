package e2e

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"
)

// needPeer returns the path of a real peer program. A missing peer fails the
// test under CI=true and skips it otherwise.
func needPeer(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI (Debian package %s): %v", name, pkg, err)
		}
		t.Skipf("%s not installed (Debian package %s): %v", name, pkg, err)
	}
	return p
}

// seriesKey names one series of the public API.
type seriesKey struct{ measurement, station, field string }

// querySeries returns the raw points of one series between from and to.
func querySeries(ctx context.Context, httpC string, k seriesKey, from, to int64) ([][2]float64, error) {
	q := url.Values{"measurement": {k.measurement}, "station": {k.station}, "field": {k.field}, "from": {fmt.Sprint(from)}, "to": {fmt.Sprint(to)}}
	var ans seriesAnswer
	if err := getJSON(ctx, "http://"+httpC+"/api/v1/series?"+q.Encode(), &ans); err != nil {
		return nil, err
	}
	var pts [][2]float64
	for _, s := range ans.Series {
		if s.Tags["station"] != k.station {
			return nil, fmt.Errorf("%v: answer for station %q", k, s.Tags["station"])
		}
		pts = append(pts, s.Points...)
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i][0] < pts[j][0] })
	return pts, nil
}

// assertSeries waits until every series holds exactly the wanted points and
// fails with the difference if it never does.
func assertSeries(t *testing.T, httpC string, want map[seriesKey][][2]float64, from, to int64, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout+10*time.Second)
	defer cancel()
	deadline := time.Now().Add(timeout)
	for {
		var diff error
		for k, w := range want {
			got, err := querySeries(ctx, httpC, k, from, to)
			if err != nil {
				diff = err
				break
			}
			if len(got) == 0 && len(w) == 0 {
				continue
			}
			if !reflect.DeepEqual(got, w) {
				diff = fmt.Errorf("%v: %s", k, pointsDiff(got, w))
				break
			}
		}
		if diff == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("series never matched: %v", diff)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startMosquitto runs a private Debian mosquitto on a free loopback port
// with the given extra config lines and returns its address.
func startMosquitto(t *testing.T, extra string) string {
	t.Helper()
	bin := needPeer(t, "/usr/sbin/mosquitto", "mosquitto")
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n%s", port, extra)), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "mosquitto.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 10000 {
				b = b[len(b)-10000:]
			}
			t.Logf("---- mosquitto log (tail) ----\n%s", b)
		}
	})
	waitFor(t, "mosquitto to listen", 10*time.Second, func() (bool, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false, err
		}
		c.Close()
		return true, nil
	})
	return addr
}

// mosquittoPub publishes one message with the real mosquitto_pub.
func mosquittoPub(t *testing.T, addr, topic, payload string, qos int) {
	t.Helper()
	bin := needPeer(t, "mosquitto_pub", "mosquitto-clients")
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command(bin, "-h", host, "-p", port, "-q", fmt.Sprint(qos), "-t", topic, "-m", payload).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub -t %s: %v: %s", topic, err, out)
	}
}

// pointsDiff describes how two point lists differ, briefly.
func pointsDiff(got, want [][2]float64) string {
	if len(got) > 20 || len(want) > 20 {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				return fmt.Sprintf("%d points, want %d; first difference at %d: %v, want %v", len(got), len(want), i, got[i], want[i])
			}
		}
		return fmt.Sprintf("%d points, want %d", len(got), len(want))
	}
	return fmt.Sprintf("got %v, want %v", got, want)
}

// waitSubscribed publishes QoS 0 probes to the topic "probe" until the agent
// at httpA has read one: its mqtt input is then subscribed.
func waitSubscribed(t *testing.T, broker, httpA string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	waitFor(t, "the agent to subscribe", 30*time.Second, func() (bool, error) {
		mosquittoPub(t, broker, "probe", "1", 0)
		var st agentStatus
		if err := getJSON(ctx, "http://"+httpA+"/status", &st); err != nil {
			return false, err
		}
		return st.PointsRead > 0, fmt.Errorf("status %+v", st)
	})
}

// recentBase is a whole hour a day ago, in Unix seconds: old enough that
// test readings an hour or so after it are in the past, recent enough for
// any max_past a collector may be given.
func recentBase() int64 {
	return time.Now().Add(-24 * time.Hour).Truncate(time.Hour).Unix()
}
