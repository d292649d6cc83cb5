package mqtt

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citysense/citysense/internal/confx"
)

// TestInput_Run_sharedSubscriptions: four connections to one shared
// subscription at a real mosquitto. Every message arrives exactly once,
// and the broker spread them over all four client ids.
func TestInput_Run_sharedSubscriptions(t *testing.T) {
	addr := startMosquitto(t)
	in := New()
	in.Broker = "tcp://" + addr
	in.ClientID = "citysense-shared"
	in.Connections = 4
	in.Topics = []Topic{{Filter: "count/+", Template: "count/{station}", JSON: JSONOptions{TimePath: "ts"}}}
	set := metrics.NewSet()
	in.SetMetrics(set)
	acc := &collect{}
	stop := runInput(t, in, acc)
	defer stop()

	pubc := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("shared-pub"))
	if tok := pubc.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal("publisher connect", tok.Error())
	}
	defer pubc.Disconnect(100)
	// Subscribed (all four) once probes reach every connection.
	counter := func(name, id string) uint64 {
		return set.GetOrCreateCounter(fmt.Sprintf(`citysense_input_%s_total{input="mqtt",client_id=%q}`, name, id)).Get()
	}
	probes := 0
	waitUntil(t, "four subscribed connections", func() bool {
		pubc.Publish("count/probe", 1, false, `{"ts":1,"probe":1}`).Wait()
		probes++
		for i := 1; i <= 4; i++ {
			if counter("messages", fmt.Sprintf("citysense-shared-%d", i)) == 0 {
				return false
			}
		}
		return true
	})
	const n = 2000
	var toks []paho.Token
	for i := range n {
		toks = append(toks, pubc.Publish(fmt.Sprintf("count/s%d", i%5), 1, false, fmt.Sprintf(`{"ts":%d,"counter":%d}`, 1767225600+i, i)))
	}
	for _, tok := range toks {
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal("publish", tok.Error())
		}
	}
	seen := make([]int, n)
	waitUntil(t, "every message", func() bool {
		c := 0
		for _, p := range acc.snapshot() {
			if p.Time != 1e9 {
				c++
			}
		}
		return c >= n
	})
	time.Sleep(200 * time.Millisecond) // duplicates would come now
	for _, p := range acc.snapshot() {
		if p.Time == 1e9 {
			continue
		}
		v, _ := p.Field("counter")
		i := int(v.FloatV())
		if i < 0 || i >= n || p.Time != int64(1767225600+i)*1e9 {
			t.Fatalf("bad point %v", p)
		}
		seen[i]++
	}
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("message %d arrived %d times", i, c)
		}
	}
	var total uint64
	for i := 1; i <= 4; i++ {
		m := counter("messages", fmt.Sprintf("citysense-shared-%d", i))
		if m < 2 {
			t.Errorf("connection %d read %d messages", i, m)
		}
		total += m
	}
	// Probes published before all four subscribed went to fewer or none.
	if total < n || total > uint64(n+probes) {
		t.Errorf("the connections read %d messages, want %d and up to %d probes", total, n, probes)
	}
}

func TestInput_Init_connections(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Input)
		want string // problem path, "" for none
	}{
		{func(in *Input) { in.Connections = 0 }, "connections"},
		{func(in *Input) { in.Connections = MaxConnections + 1 }, "connections"},
		{func(in *Input) { in.ShareGroup = "a/b" }, "share_group"},
		{func(in *Input) { in.ClientID = strings.Repeat("x", 62); in.Connections = 10 }, "client_id"},
		{func(in *Input) { in.Connections = 2; in.Topics[0].Format = FormatSparkplugB }, "topics[0].format"},
		{func(in *Input) { in.Connections = 8 }, ""},
	} {
		in := New()
		in.Broker = "tcp://127.0.0.1:1883"
		in.ClientID = "gw"
		in.Topics = []Topic{{Filter: "a/#"}}
		tc.mod(in)
		err := in.Init(nil)
		var p confx.Problem
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", in, err)
		case tc.want != "" && (!errors.As(err, &p) || p.Path != tc.want):
			t.Errorf("Init = %v, want a problem at %s", err, tc.want)
		}
	}
	in := New()
	in.Broker, in.Topics = "tcp://127.0.0.1:1883", []Topic{{Filter: "a/#"}}
	in.ClientID, in.Connections = "gw", 3
	if err := in.Init(nil); err != nil || in.shareGroup != "gw" {
		t.Fatalf("Init = %v, share group %q", err, in.shareGroup)
	}
	if in.connClientID(0) != "gw-1" || in.connClientID(2) != "gw-3" {
		t.Fatalf("client ids %s %s", in.connClientID(0), in.connClientID(2))
	}
}
