package mqtt

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/citysense/citysense/protocols"
)

// slowCommit is an accumulator whose every write costs a fixed time, as an
// fsync'd buffer commit does (0.7–1.5 ms measured on the dev machine).
type slowCommit struct {
	cost   time.Duration
	points atomic.Int64
	writes atomic.Int64
	done   chan struct{}
	want   int64
	once   sync.Once
}

func (s *slowCommit) Write(_ context.Context, pts []protocols.Point) error {
	time.Sleep(s.cost)
	s.writes.Add(1)
	if s.points.Add(int64(len(pts))) >= s.want {
		s.once.Do(func() { close(s.done) })
	}
	return nil
}

// BenchmarkInput_mosquittoQoS1 measures QoS 1 messages/s through a real
// mosquitto (stock limits) into an accumulator that costs 1 ms per commit,
// with acknowledgements after each commit. Reported: msgs/s and messages per
// commit. It is a benchmark, not a test: nothing asserts on speed.
//
// The broker's queue for the subscriber is unlimited here: with stock
// mosquitto (max_queued_messages 1000) a publisher faster than the
// subscriber makes the broker drop QoS 1 messages beyond the queue, which
// no subscriber can prevent.
func BenchmarkInput_mosquittoQoS1(b *testing.B) {
	for _, conns := range []int{1, 8} {
		b.Run(fmt.Sprintf("connections=%d", conns), func(b *testing.B) { benchMosquittoQoS1(b, conns) })
	}
}

func benchMosquittoQoS1(b *testing.B, connections int) {
	addr := startMosquitto(b, "max_queued_messages 0")
	const n = 20000
	for b.Loop() {
		acc := &slowCommit{cost: time.Millisecond, done: make(chan struct{}), want: n}
		in := New()
		in.Broker = "tcp://" + addr
		in.ClientID = fmt.Sprintf("bench-%d", time.Now().UnixNano())
		in.Connections = connections
		in.Topics = []Topic{{Filter: "bench/+/+/+", Template: "bench/{district}/{station}/{_measurement}", JSON: JSONOptions{TimePath: "ts"}}}
		if err := in.Init(nil); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		runDone := make(chan struct{})
		go func() { _ = in.Run(ctx, acc); close(runDone) }()
		time.Sleep(300 * time.Millisecond) // subscribed

		pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(in.ClientID + "-pub").SetMaxResumePubInFlight(1000))
		if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			b.Fatal("publisher connect", tok.Error())
		}
		start := time.Now()
		var toks []paho.Token
		for i := range n {
			payload := fmt.Sprintf(`{"ts":%d,"pm25":12.3,"pm10":20.1,"no2":31,"temperature":4.5,"counter":%d}`, 1735689600+i, i)
			toks = append(toks, pub.Publish(fmt.Sprintf("bench/d0%d/s%04d/air", i%8+1, i%50), 1, false, payload))
		}
		for _, tok := range toks {
			tok.Wait()
		}
		select {
		case <-acc.done:
		case <-time.After(60 * time.Second):
			b.Fatalf("only %d of %d points after 60s", acc.points.Load(), n)
		}
		el := time.Since(start)
		pub.Disconnect(100)
		cancel()
		<-runDone
		b.ReportMetric(float64(n)/el.Seconds(), "msgs/s")
		b.ReportMetric(float64(n)/float64(acc.writes.Load()), "msgs/commit")
	}
}
