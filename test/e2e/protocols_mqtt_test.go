package e2e

import (
	"math"
	"os"
	"path/filepath"

	"bufio"
	"bytes"
	"context"
	"fmt"
	"google.golang.org/protobuf/encoding/protowire"
	"net"
	"os/exec"
	"testing"
	"time"
)

// TestProtocols_MQTT: Debian mosquitto, mosquitto_pub publishing JSON (QoS 1)
// and line protocol (QoS 0) on templated topics, the agent's mqtt input, the
// collector: the exact points come back from /api/v1/series.
func TestProtocols_MQTT(t *testing.T) {
	broker := startMosquitto(t, "")
	_, httpC, natsC := startCollector(t, t.TempDir())
	httpA := freeAddr(t)
	cfg := writeFile(t, "agent.yaml", fmt.Sprintf(`
agent:
  id: e2e-mqtt
inputs:
  - type: mqtt
    broker: tcp://%s
    client_id: e2e-mqtt-agent
    qos: 1
    topics:
      - filter: sensors/+/+/+
        template: sensors/{district}/{station}/{_measurement}
        format: json
        json:
          time_path: ts
          time_format: unix_ms
      - filter: lp/+
        template: lp/{district}
        format: line
        precision: s
        qos: 0
      - filter: probe
        format: value
        measurement: probe
      - filter: spBv1.0/#
        format: sparkplug_b
        tags: {station: sp-meter}
`, broker))
	start(t, "citysense-agent", "run", "-c", cfg, "--data-dir", t.TempDir(), "--http", httpA, "--collector", "nats://"+natsC, "--log-format", "json")

	// The subscription exists once a probe gets through.
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	waitSubscribed(t, broker, httpA)

	base := recentBase()
	want := map[seriesKey][][2]float64{}
	for i := range 5 {
		ts := base + int64(i)*60
		st := fmt.Sprintf("s%04d", i%2+1)
		pm25 := 10 + float64(i)/2
		mosquittoPub(t, broker, fmt.Sprintf("sensors/d0%d/%s/air", i%2+1, st),
			fmt.Sprintf(`{"ts":%d,"pm25":%g,"meta":{"battery":%d}}`, ts*1000, pm25, 90-i), 1)
		want[seriesKey{"air", st, "pm25"}] = append(want[seriesKey{"air", st, "pm25"}], [2]float64{float64(ts), pm25})
		want[seriesKey{"air", st, "meta_battery"}] = append(want[seriesKey{"air", st, "meta_battery"}], [2]float64{float64(ts), float64(90 - i)})
	}
	mosquittoPub(t, broker, "lp/d03", fmt.Sprintf("noise,station=s0003 laeq=61.5 %d\nnoise,station=s0003 laeq=63 %d", base, base+60), 0)
	want[seriesKey{"noise", "s0003", "laeq"}] = [][2]float64{{float64(base), 61.5}, {float64(base + 60), 63}}

	// Sparkplug B: a DBIRTH names the metric and its alias, a DDATA uses the alias.
	birth := filepath.Join(t.TempDir(), "birth.pb")
	data := filepath.Join(t.TempDir(), "data.pb")
	os.WriteFile(birth, sparkplugPayload(uint64(base)*1000, "Power/Active", 1, 4.25), 0o600)
	os.WriteFile(data, sparkplugPayload(uint64(base+60)*1000, "", 1, 4.5), 0o600)
	host, port, _ := net.SplitHostPort(broker)
	for _, msg := range [][2]string{{"spBv1.0/plant/DBIRTH/gw1/meter1", birth}, {"spBv1.0/plant/DDATA/gw1/meter1", data}} {
		if out, err := exec.Command(needPeer(t, "mosquitto_pub", "mosquitto-clients"), "-h", host, "-p", port, "-q", "1", "-t", msg[0], "-f", msg[1]).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub %s: %v: %s", msg[0], err, out)
		}
	}
	want[seriesKey{"sparkplug", "sp-meter", "Power_Active"}] = [][2]float64{{float64(base), 4.25}, {float64(base + 60), 4.5}}

	assertSeries(t, httpC, want, base-1, base+3600, 30*time.Second)
	// The district came from the topic.
	var ans seriesAnswer
	if err := getJSON(ctx, fmt.Sprintf("http://%s/api/v1/series?measurement=noise&field=laeq&station=s0003&from=%d&to=%d", httpC, base-1, base+3600), &ans); err != nil {
		t.Fatal(err)
	}
	if len(ans.Series) != 1 || ans.Series[0].Tags["district"] != "d03" {
		t.Fatalf("noise series tags = %+v, want district d03 from the topic", ans.Series)
	}
}

// TestProtocols_MQTTQoS1KillAgent: mosquitto_pub keeps publishing QoS 1
// messages while the agent is killed with SIGKILL and started again on the
// same buffer and client id. Every message must reach the collector, each
// exactly once: a message the broker redelivers because the agent died
// between its buffer commit and the PUBACK carries the same timestamp, so it
// lands on the same point.
func TestProtocols_MQTTQoS1KillAgent(t *testing.T) { mqttKillAgent(t, 1) }

// TestProtocols_MQTTQoS1KillAgentShared is the same with the input on four
// connections sharing the subscription ($share/…, client ids -1 … -4):
// each connection's session keeps what it had in flight.
func TestProtocols_MQTTQoS1KillAgentShared(t *testing.T) { mqttKillAgent(t, 4) }

func mqttKillAgent(t *testing.T, connections int) {
	const n = 3000
	// The broker keeps every message for the absent agent.
	broker := startMosquitto(t, "max_queued_messages 0\nmax_inflight_messages 20\n")
	_, httpC, natsC := startCollector(t, t.TempDir())
	httpA, dataA := freeAddr(t), t.TempDir()
	cfg := writeFile(t, "agent.yaml", fmt.Sprintf(`
agent:
  id: e2e-mqtt-kill
inputs:
  - type: mqtt
    broker: tcp://%s
    client_id: e2e-kill-agent
    connections: %d
    qos: 1
    reconnect_min: 100ms
    reconnect_max: 1s
    topics:
      - filter: count/+
        template: count/{station}
        measurement: qos
        json: {time_path: ts}
      - filter: probe
        format: value
        measurement: probe
`, broker, connections))
	args := []string{"run", "-c", cfg, "--data-dir", dataA, "--http", httpA, "--collector", "nats://" + natsC, "--log-format", "json"}
	agent := start(t, "citysense-agent", args...)
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	status := func() agentStatus {
		var st agentStatus
		_ = getJSON(ctx, "http://"+httpA+"/status", &st)
		return st
	}
	waitFor(t, "the agent to subscribe", 20*time.Second, func() (bool, error) {
		mosquittoPub(t, broker, "probe", "1", 0)
		st := status()
		return st.PointsRead > 0, fmt.Errorf("status %+v", st)
	})
	probes := status().PointsRead

	bin := needPeer(t, "mosquitto_pub", "mosquitto-clients")
	host, port, _ := net.SplitHostPort(broker)
	pubCmd := exec.Command(bin, "-h", host, "-p", port, "-q", "1", "-t", "count/s0001", "-l")
	stdin, err := pubCmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var pubOut bytes.Buffer
	pubCmd.Stdout, pubCmd.Stderr = &pubOut, &pubOut
	if err := pubCmd.Start(); err != nil {
		t.Fatal(err)
	}
	base := recentBase()
	pubDone := make(chan error, 1)
	go func() {
		w := bufio.NewWriter(stdin)
		for i := range n {
			fmt.Fprintf(w, `{"ts":%d,"counter":%d}`+"\n", base+int64(i), i)
			if i%50 == 49 {
				w.Flush()
				time.Sleep(20 * time.Millisecond) // about 2,500 messages/s
			}
		}
		w.Flush()
		stdin.Close()
		pubDone <- pubCmd.Wait()
	}()

	// Two kills while messages flow, each with some in the agent's queue
	// and some in flight at the broker.
	for _, at := range []int64{n / 4, n / 2} {
		waitFor(t, "the agent to read messages", 20*time.Second, func() (bool, error) {
			st := status()
			return st.PointsRead-probes > at, fmt.Errorf("status %+v", st)
		})
		if err := agent.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-agent.done
		time.Sleep(300 * time.Millisecond) // the broker queues in the meantime
		agent = start(t, "citysense-agent", args...)
		probes = 0 // the restarted agent counts from zero; it reads at least what it had not acknowledged
		waitFor(t, "the restarted agent", 20*time.Second, func() (bool, error) { return httpOK("http://" + httpA + "/healthz") })
	}

	select {
	case err := <-pubDone:
		if err != nil {
			t.Fatalf("mosquitto_pub: %v: %s", err, pubOut.String())
		}
	case <-ctx.Done():
		t.Fatal("mosquitto_pub did not finish")
	}
	want := make([][2]float64, n)
	for i := range want {
		want[i] = [2]float64{float64(base + int64(i)), float64(i)}
	}
	assertSeries(t, httpC, map[seriesKey][][2]float64{{"qos", "s0001", "counter"}: want}, base-1, base+n+1, 30*time.Second)
	t.Logf("all %d QoS 1 messages arrived exactly once across two SIGKILLs of the agent", n)
}

// sparkplugPayload encodes a Sparkplug B payload with one double metric
// (name may be empty: alias only).
func sparkplugPayload(tsMillis uint64, name string, alias uint64, v float64) []byte {
	var m []byte
	if name != "" {
		m = protowire.AppendTag(m, 1, protowire.BytesType)
		m = protowire.AppendString(m, name)
	}
	m = protowire.AppendTag(m, 2, protowire.VarintType)
	m = protowire.AppendVarint(m, alias)
	m = protowire.AppendTag(m, 4, protowire.VarintType)
	m = protowire.AppendVarint(m, 10) // Double
	m = protowire.AppendTag(m, 13, protowire.Fixed64Type)
	m = protowire.AppendFixed64(m, math.Float64bits(v))
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, tsMillis)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}
