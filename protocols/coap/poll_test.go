package coap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

// resourceServer is a CoAP server in the test with resources that answer
// GET with a fixed body, and one observable resource whose observers are
// sent each body given to notify.
type resourceServer struct {
	addr string

	maxAge byte // seconds, sent with the registration's answer; 0: none

	mu       sync.Mutex
	gets     map[string]int
	observer mux.Conn
	token    message.Token
	seq      uint32
}

func startResourceServer(t *testing.T, bodies map[string]struct {
	cf   message.MediaType
	body string
}) *resourceServer {
	t.Helper()
	rs := &resourceServer{gets: map[string]int{}}
	r := mux.NewRouter()
	r.DefaultHandle(mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		path, _ := req.Path()
		q, _ := req.Queries()
		key := path + "?" + strings.Join(q, "&")
		if obs, err := req.Observe(); err == nil {
			key += fmt.Sprintf("#observe=%d", obs) // 0 registers, 1 deregisters
		}
		rs.mu.Lock()
		rs.gets[key]++
		rs.mu.Unlock()
		if obs, err := req.Observe(); err == nil && obs == 0 && path == "/obs" {
			rs.mu.Lock()
			rs.observer, rs.token = w.Conn(), req.Token()
			rs.mu.Unlock()
			opts := []message.Option{{ID: message.Observe, Value: []byte{2}}}
			if rs.maxAge > 0 {
				opts = append(opts, message.Option{ID: message.MaxAge, Value: []byte{rs.maxAge}})
			}
			_ = w.SetResponse(codes.Content, message.AppJSON, bytes.NewReader([]byte(`{"level":1,"time":1767225600}`)), opts...)
			return
		}
		b, ok := bodies[path]
		if !ok {
			_ = w.SetResponse(codes.NotFound, message.TextPlain, nil)
			return
		}
		_ = w.SetResponse(codes.Content, b.cf, bytes.NewReader([]byte(b.body)))
	}))
	l, err := coapnet.NewListenUDP("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var periodic sync.WaitGroup
	srv := udp.NewServer(options.WithMux(r), options.WithContext(ctx), options.WithPeriodicRunner(periodicRunner(ctx, &periodic)))
	done := make(chan struct{})
	go func() { _ = srv.Serve(l); close(done) }()
	t.Cleanup(func() { cancel(); srv.Stop(); <-done; l.Close(); periodic.Wait() })
	rs.addr = l.LocalAddr().String()
	return rs
}

// notify sends body to the observer, if there is one.
func (rs *resourceServer) notify(body string) error {
	rs.mu.Lock()
	cc, token := rs.observer, rs.token
	rs.seq++
	seq := rs.seq + 2
	rs.mu.Unlock()
	if cc == nil {
		return errors.New("no observer")
	}
	m := cc.AcquireMessage(cc.Context())
	defer cc.ReleaseMessage(m)
	m.SetCode(codes.Content)
	m.SetToken(token)
	m.SetContentFormat(message.AppJSON)
	m.SetObserve(seq)
	m.SetBody(bytes.NewReader([]byte(body)))
	return cc.WriteMessage(m)
}

func (rs *resourceServer) count(key string) int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.gets[key]
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestInput_Run_poll(t *testing.T) {
	rs := startResourceServer(t, map[string]struct {
		cf   message.MediaType
		body string
	}{
		"/sensors/air": {message.AppJSON, `{"pm25":12.5,"meta":{"battery":90},"time":1767225600}`},
		"/lp":          {message.TextPlain, "noise,station=s9 laeq=61.5 1767225600\nnoise laeq= 1767225660\n"},
	})
	in := New()
	in.Listen = ""
	in.Tags = map[string]string{"district": "d01", "station": "input-wide"}
	in.Poll = []Poll{
		{URL: "coap://" + rs.addr + "/sensors/air?unit=1", Tags: map[string]string{"station": "s1"}, Interval: confx.Duration(100 * time.Millisecond), Jitter: confx.Duration(50 * time.Millisecond)},
		{URL: "coap://" + rs.addr + "/lp", Precision: "s", Interval: confx.Duration(100 * time.Millisecond)},
	}
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	acc := &quarantining{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, acc) }()
	waitUntil(t, "three polls of each stored", func() bool {
		air, noise := 0, 0
		for _, p := range acc.snapshot() {
			if p.Measurement == "air" {
				air++
			} else {
				noise++
			}
		}
		return air >= 3 && noise >= 3
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	air := protocols.Point{Measurement: "air", Tags: []protocols.Tag{{Key: "district", Value: "d01"}, {Key: "station", Value: "s1"}},
		Fields: []protocols.Field{f("meta_battery", 90), f("pm25", 12.5)}, Time: 1767225600e9}
	noise := protocols.Point{Measurement: "noise", Tags: []protocols.Tag{{Key: "district", Value: "d01"}, {Key: "station", Value: "s9"}},
		Fields: []protocols.Field{f("laeq", 61.5)}, Time: 1767225600e9}
	var nAir, nNoise int
	for _, p := range acc.snapshot() {
		switch {
		case reflect.DeepEqual(p, air):
			nAir++
		case reflect.DeepEqual(p, noise):
			nNoise++
		default:
			t.Fatalf("unexpected point %+v", p)
		}
	}
	if nAir < 3 || nNoise < 3 || nAir > rs.count("/sensors/air?unit=1") || nNoise > rs.count("/lp?") {
		t.Fatalf("%d air and %d noise points from %d and %d polls", nAir, nNoise, rs.count("/sensors/air?unit=1"), rs.count("/lp?"))
	}
	// The bad second line of /lp is quarantined with each poll.
	if len(acc.sources) < 3 || acc.sources[0] != "coap coap://"+rs.addr+"/lp: noise,station=s9 laeq=61.5 1767225600\nnoise laeq= 1767225660\n" {
		t.Fatalf("quarantined %q", acc.sources)
	}
}

func TestInput_Run_observe(t *testing.T) {
	rs := startResourceServer(t, nil)
	in := New()
	in.Listen = ""
	in.Poll = []Poll{{URL: "coap://" + rs.addr + "/obs", Observe: true, Measurement: "tank", Tags: map[string]string{"station": "t1"}, Interval: confx.Duration(time.Hour)}}
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	acc := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, acc) }()
	waitUntil(t, "the registration's answer", func() bool { return len(acc.snapshot()) == 1 })
	for i := 2; i <= 4; i++ {
		if err := rs.notify(fmt.Sprintf(`{"level":%d,"time":%d}`, i, 1767225600+60*(i-1))); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the notification", func() bool { return len(acc.snapshot()) == i })
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range acc.snapshot() {
		got = append(got, fmt.Sprintf("%s %v %v %d", p.Measurement, p.Tags, p.Fields, p.Time/1e9))
	}
	want := []string{
		"tank [{station t1}] [{level 1}] 1767225600",
		"tank [{station t1}] [{level 2}] 1767225660",
		"tank [{station t1}] [{level 3}] 1767225720",
		"tank [{station t1}] [{level 4}] 1767225780",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("points\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// One registration: notifications, not polls; no plain GET.
	if n, m := rs.count("/obs?#observe=0"), rs.count("/obs?"); n != 1 || m != 0 {
		t.Fatalf("%d registrations and %d GETs of /obs, want 1 and 0", n, m)
	}
}

func TestInput_Init_poll(t *testing.T) {
	in := New()
	in.Listen = ""
	in.Poll = []Poll{
		{URL: "http://x/y"},
		{URL: "coap://h/", Format: "xml", Interval: confx.Duration(time.Millisecond), Precision: "h"},
		{URL: "coap://h/a", Interval: confx.Duration(time.Second), Jitter: confx.Duration(2 * time.Second), Tags: map[string]string{"": "v"}},
	}
	err := in.Init(nil)
	var paths []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var p confx.Problem
		if !errors.As(e, &p) {
			t.Fatal(e)
		}
		paths = append(paths, p.Path)
	}
	want := "poll[0].url poll[1].measurement poll[1].format poll[1].precision poll[1].interval poll[2].jitter poll[2].tags"
	if strings.Join(paths, " ") != want {
		t.Fatalf("problems at %v\nwant %s", paths, want)
	}
	// Neither a server nor polls: nothing to do.
	in = New()
	in.Listen = ""
	if err := in.Init(nil); err == nil || !strings.Contains(err.Error(), "nothing to poll") {
		t.Fatalf("Init = %v", err)
	}
	// Defaults: port 5683, measurement from the path, interval 30s.
	in = New()
	in.Poll = []Poll{{URL: "coap://192.0.2.7/sensors/air"}}
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	p := in.Poll[0]
	if p.addr != "192.0.2.7:5683" || p.measurement != "air" || p.Interval.D() != DefaultPollInterval || p.Timeout.D() != DefaultPollTimeout {
		t.Fatalf("defaults %+v", p)
	}
}

// TestInput_Run_observeReregisters: a server that stops notifying (it lost
// its observers, say) is registered with again once the last
// representation's Max-Age has passed.
func TestInput_Run_observeReregisters(t *testing.T) {
	rs := startResourceServer(t, nil)
	rs.maxAge = 1
	in := New()
	in.Listen = ""
	in.Poll = []Poll{{URL: "coap://" + rs.addr + "/obs", Observe: true, Measurement: "tank", Interval: confx.Duration(time.Hour)}}
	if err := in.Init(nil); err != nil {
		t.Fatal(err)
	}
	acc := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, acc) }()
	// Each registration's answer is stored: two points, two registrations.
	waitUntil(t, "a second registration", func() bool { return len(acc.snapshot()) >= 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := rs.count("/obs?#observe=0"); n < 2 {
		t.Fatalf("%d registrations", n)
	}
}
