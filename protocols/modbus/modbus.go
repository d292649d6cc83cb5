package modbus

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/citysense/citysense/internal/confx"
	"github.com/citysense/citysense/protocols"
)

//go:embed sample.yaml
var sampleConfig string

func init() {
	protocols.Register("modbus", func() protocols.Input { return New() })
}

// Defaults.
const (
	DefaultInterval    = 10 * time.Second
	DefaultJitter      = time.Second
	DefaultTimeout     = 2 * time.Second
	DefaultBackoffMax  = 5 * time.Minute
	DefaultMeasurement = "modbus"
	DefaultPort        = "502"
)

// Input is the "modbus" input. Its exported fields are its YAML configuration.
type Input struct {
	Interval    confx.Duration     `yaml:"interval"`
	Jitter      confx.Duration     `yaml:"jitter"`
	Timeout     confx.Duration     `yaml:"timeout"`
	BackoffMax  confx.Duration     `yaml:"backoff_max"`
	MaxGap      int                `yaml:"max_gap"` // registers read and discarded to join two reads
	Measurement string             `yaml:"measurement"`
	Tags        map[string]string  `yaml:"tags"`
	Profiles    map[string]Profile `yaml:"profiles"`
	Devices     []Device           `yaml:"devices"`

	log       *slog.Logger
	set       *metrics.Set
	newClient ClientFactory
	devices   []*device
	buses     map[string]*bus
}

// Register is one field of a register map.
type Register struct {
	Name    string   `yaml:"name"`
	Kind    string   `yaml:"kind"` // holding (default), input, coil, discrete
	Address uint16   `yaml:"address"`
	Type    string   `yaml:"type"`   // default uint16, or bool for coils and discrete inputs
	Order   string   `yaml:"order"`  // ABCD (default), CDAB, BADC, DCBA
	Length  int      `yaml:"length"` // registers of a string
	Bit     *int     `yaml:"bit"`    // bool from one bit (0–15) of a register
	Scale   *float64 `yaml:"scale"`  // default 1
	Offset  float64  `yaml:"offset"`
	Unit    string   `yaml:"unit"` // documentation: shown by logs and the docs, not stored
}

// Profile is the register map of one device model.
type Profile struct {
	Measurement string     `yaml:"measurement"`
	Registers   []Register `yaml:"registers"`
}

// Device is one or more units at one address.
type Device struct {
	// Address is tcp://host[:502], rtuovertcp://host:port or
	// rtu:///dev/ttyUSB0?baud=9600&parity=N&data_bits=8&stop_bits=1.
	Address     string            `yaml:"address"`
	UnitID      *int              `yaml:"unit_id"`
	UnitIDs     []int             `yaml:"unit_ids"` // one device per unit id, same map
	Profile     string            `yaml:"profile"`
	Registers   []Register        `yaml:"registers"` // added to the profile's
	Measurement string            `yaml:"measurement"`
	Tags        map[string]string `yaml:"tags"`     // "{unit_id}" in a value is replaced by the unit id
	Interval    confx.Duration    `yaml:"interval"` // 0: the input's
}

// New returns an Input with the documented defaults.
func New() *Input {
	return &Input{
		Interval:    confx.Duration(DefaultInterval),
		Jitter:      confx.Duration(DefaultJitter),
		Timeout:     confx.Duration(DefaultTimeout),
		BackoffMax:  confx.Duration(DefaultBackoffMax),
		Measurement: DefaultMeasurement,
		newClient:   NewClient,
	}
}

// SampleConfig returns the documented example configuration.
func (*Input) SampleConfig() string { return sampleConfig }

// SetMetrics makes the input register its metrics in set (the agent's, so
// that they appear on its /metrics). Without it they go to a private set.
func (in *Input) SetMetrics(set *metrics.Set) { in.set = set }

// Init validates the configuration without I/O and reports every problem.
func (in *Input) Init(log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	in.log = log
	if in.newClient == nil {
		in.newClient = NewClient
	}
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, confx.Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if in.Interval.D() < 10*time.Millisecond {
		bad("interval", "must be at least 10ms, got %v", in.Interval)
	}
	if in.Jitter.D() < 0 || in.Jitter.D() > in.Interval.D() {
		bad("jitter", "must be between 0 and the interval, got %v", in.Jitter)
	}
	if in.Timeout.D() <= 0 {
		bad("timeout", "must be positive, got %v", in.Timeout)
	}
	if in.BackoffMax.D() < in.Interval.D() {
		bad("backoff_max", "must be at least the interval, got %v", in.BackoffMax)
	}
	if in.MaxGap < 0 || in.MaxGap > 100 {
		bad("max_gap", "must be between 0 and 100, got %d", in.MaxGap)
	}
	if in.Measurement == "" {
		bad("measurement", "must not be empty")
	}
	profiles := map[string][]field{}
	for name, p := range in.Profiles {
		fs, perrs := compileRegisters(p.Registers, "profiles."+name+".registers")
		errs = append(errs, perrs...)
		if len(p.Registers) == 0 {
			bad("profiles."+name+".registers", "a profile needs registers")
		}
		profiles[name] = fs
	}
	if len(in.Devices) == 0 {
		bad("devices", "at least one device is required")
	}
	in.devices, in.buses = nil, map[string]*bus{}
	seen := map[string]string{}
	for i, d := range in.Devices {
		path := fmt.Sprintf("devices[%d]", i)
		cfg, err := parseAddress(d.Address)
		if err != nil {
			bad(path+".address", "%v", err)
		}
		cfg.Timeout = in.Timeout.D()
		var fields []field
		measurement := in.Measurement
		if d.Profile != "" {
			p, ok := in.Profiles[d.Profile]
			if !ok {
				bad(path+".profile", "unknown profile %q (known: %s)", d.Profile, strings.Join(sortedKeys(in.Profiles), ", "))
			} else {
				fields = append(fields, profiles[d.Profile]...)
				if p.Measurement != "" {
					measurement = p.Measurement
				}
			}
		}
		own, ferrs := compileRegisters(d.Registers, path+".registers")
		errs = append(errs, ferrs...)
		fields = append(fields, own...)
		for j := range fields {
			for k := range j {
				if fields[k].Name == fields[j].Name {
					bad(path, "field %q is defined twice (profile and device registers together)", fields[j].Name)
				}
			}
		}
		if len(fields) == 0 && d.Profile == "" && len(d.Registers) == 0 {
			bad(path, "needs a profile or registers")
		}
		if d.Measurement != "" {
			measurement = d.Measurement
		}
		units := slices.Clone(d.UnitIDs)
		if d.UnitID != nil {
			units = append(units, *d.UnitID)
		}
		if len(units) == 0 {
			units = []int{1}
		}
		interval := in.Interval.D()
		if d.Interval != 0 {
			interval = d.Interval.D()
			if interval < 10*time.Millisecond {
				bad(path+".interval", "must be at least 10ms, got %v", d.Interval)
			}
		}
		b := in.buses[cfg.URL]
		if b == nil {
			b = &bus{cfg: cfg, newClient: in.newClient}
			in.buses[cfg.URL] = b
		}
		reqs := plan(fields, in.MaxGap)
		for _, u := range units {
			if u < 0 || u > 247 {
				bad(path+".unit_ids", "unit id %d out of range 0–247", u)
				continue
			}
			key := cfg.URL + "#" + strconv.Itoa(u)
			if prev, dup := seen[key]; dup && cfg.URL != "" {
				bad(path, "unit %d at %s is already polled by %s", u, cfg.URL, prev)
			}
			seen[key] = path
			tags := map[string]string{}
			for k, v := range in.Tags {
				tags[k] = v
			}
			for k, v := range d.Tags {
				// A profile instantiated for many units names each one.
				tags[k] = strings.ReplaceAll(v, "{unit_id}", strconv.Itoa(u))
			}
			tags["unit_id"] = strconv.Itoa(u)
			var tl []protocols.Tag
			for k, v := range tags {
				if k == "" {
					bad(path+".tags", "empty tag key")
				}
				tl = append(tl, protocols.Tag{Key: k, Value: v})
			}
			slices.SortFunc(tl, func(a, b protocols.Tag) int { return strings.Compare(a.Key, b.Key) })
			in.devices = append(in.devices, &device{
				name: fmt.Sprintf("%s unit %d", cfg.URL, u), bus: b, unit: uint8(u), fields: fields, reqs: reqs,
				measurement: measurement, tags: tl, interval: interval,
			})
		}
	}
	if len(errs) > 0 {
		in.devices, in.buses = nil, nil
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// compileRegisters checks a register map and fills in defaults.
func compileRegisters(regs []Register, path string) ([]field, []error) {
	var errs []error
	bad := func(i int, key, format string, args ...any) {
		p := fmt.Sprintf("%s[%d]", path, i)
		if key != "" {
			p += "." + key
		}
		errs = append(errs, confx.Problem{Path: p, Msg: fmt.Sprintf(format, args...)})
	}
	var out []field
	names := map[string]bool{}
	for i, r := range regs {
		if r.Name == "" {
			bad(i, "name", "required")
		} else if names[r.Name] {
			bad(i, "name", "%q is used twice", r.Name)
		}
		names[r.Name] = true
		if r.Kind == "" {
			r.Kind = KindHolding
		}
		if !slices.Contains([]string{KindHolding, KindInput, KindCoil, KindDiscrete}, r.Kind) {
			bad(i, "kind", "want holding, input, coil or discrete, got %q", r.Kind)
		}
		bits := isBitKind(r.Kind)
		if r.Type == "" {
			r.Type = TypeUint16
			if bits {
				r.Type = TypeBool
			}
		}
		if bits && r.Type != TypeBool {
			bad(i, "type", "%s is a single bit: type must be bool, got %q", r.Kind, r.Type)
		}
		if r.Order == "" {
			r.Order = OrderABCD
		}
		if !slices.Contains(orders, r.Order) {
			bad(i, "order", "want ABCD, CDAB, BADC or DCBA, got %q", r.Order)
		}
		w := width(r.Type, r.Length)
		switch {
		case r.Type == TypeString && (r.Length < 1 || r.Length > maxRegistersPerRead):
			bad(i, "length", "a string needs length 1–%d registers, got %d", maxRegistersPerRead, r.Length)
		case r.Type != TypeString && r.Length != 0:
			bad(i, "length", "only for type string")
		case w == 0:
			bad(i, "type", "want int16, uint16, int32, uint32, int64, uint64, float32, float64, bool or string, got %q", r.Type)
		}
		if bits {
			w = 1
		}
		if int(r.Address)+max(w, 1) > 65536 {
			bad(i, "address", "register %d + %d runs past 65535", r.Address, w)
		}
		if r.Bit != nil && (r.Type != TypeBool || bits || *r.Bit < 0 || *r.Bit > 15) {
			bad(i, "bit", "bit 0–15 selects one bit of a register for type bool")
		}
		if r.Scale != nil && *r.Scale == 0 {
			bad(i, "scale", "must not be 0")
		}
		if (r.Scale != nil || r.Offset != 0) && (r.Type == TypeBool || r.Type == TypeString) {
			bad(i, "scale", "scale and offset apply to numbers only")
		}
		out = append(out, field{Register: r, kind: r.Kind, width: w})
	}
	return out, errs
}

// parseAddress reads a device address into a BusConfig.
func parseAddress(s string) (BusConfig, error) {
	u, err := url.Parse(s)
	if err != nil || s == "" {
		return BusConfig{}, fmt.Errorf("want tcp://host:502 or rtu:///dev/ttyUSB0?baud=9600, got %q", s)
	}
	switch u.Scheme {
	case "tcp", "rtuovertcp":
		if u.Host == "" {
			return BusConfig{}, fmt.Errorf("%q has no host", s)
		}
		host := u.Host
		if _, _, err := net.SplitHostPort(host); err != nil {
			host = net.JoinHostPort(u.Hostname(), DefaultPort)
		}
		if len(u.Query()) > 0 {
			return BusConfig{}, fmt.Errorf("%q: query parameters are for rtu:// only", s)
		}
		return BusConfig{URL: u.Scheme + "://" + host}, nil
	case "rtu":
		if u.Path == "" {
			return BusConfig{}, fmt.Errorf("%q names no serial device (rtu:///dev/ttyUSB0)", s)
		}
		cfg := BusConfig{URL: "rtu://" + u.Path, Speed: 9600, DataBits: 8, Parity: "N", StopBits: 1}
		q := u.Query()
		num := func(key string, dst *uint, ok func(uint) bool) error {
			if v := q.Get(key); v != "" {
				n, err := strconv.ParseUint(v, 10, 32)
				if err != nil || !ok(uint(n)) {
					return fmt.Errorf("%q: invalid %s %q", s, key, v)
				}
				*dst = uint(n)
			}
			return nil
		}
		if err := errors.Join(
			num("baud", &cfg.Speed, func(n uint) bool { return n >= 300 && n <= 4000000 }),
			num("data_bits", &cfg.DataBits, func(n uint) bool { return n >= 5 && n <= 8 }),
			num("stop_bits", &cfg.StopBits, func(n uint) bool { return n == 1 || n == 2 }),
		); err != nil {
			return BusConfig{}, err
		}
		if p := q.Get("parity"); p != "" {
			if p != "N" && p != "E" && p != "O" {
				return BusConfig{}, fmt.Errorf("%q: parity must be N, E or O", s)
			}
			cfg.Parity = p
		}
		for k := range q {
			if !slices.Contains([]string{"baud", "data_bits", "stop_bits", "parity"}, k) {
				return BusConfig{}, fmt.Errorf("%q: unknown parameter %q (known: baud, data_bits, parity, stop_bits)", s, k)
			}
		}
		return cfg, nil
	}
	return BusConfig{}, fmt.Errorf("unknown scheme %q (want tcp, rtu or rtuovertcp)", u.Scheme)
}

// bus is one connection shared by the devices at one address; requests on
// it are serialised, which an RTU line requires and a TCP gateway expects.
type bus struct {
	cfg       BusConfig
	newClient ClientFactory
	mu        sync.Mutex
	c         Client
}

// do runs fn with the bus's client set to unit, opening the connection
// first if needed. A transport error closes the connection so that the
// next use reopens it.
func (b *bus) do(unit uint8, fn func(Client) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c == nil {
		c, err := b.newClient(b.cfg)
		if err != nil {
			return fmt.Errorf("modbus client for %s: %w", b.cfg.URL, err)
		}
		if err := c.Open(); err != nil {
			return fmt.Errorf("connect %s: %w", b.cfg.URL, err)
		}
		b.c = c
	}
	if err := b.c.SetUnitID(unit); err != nil {
		return err
	}
	err := fn(b.c)
	var ex *ExceptionError
	if err != nil && !errors.As(err, &ex) {
		b.c.Close()
		b.c = nil
	}
	return err
}

func (b *bus) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c != nil {
		b.c.Close()
		b.c = nil
	}
}

// device is one unit polled by one register map.
type device struct {
	name        string
	bus         *bus
	unit        uint8
	fields      []field
	reqs        []request
	measurement string
	tags        []protocols.Tag
	interval    time.Duration
}

// FieldError is one register that could not be read or decoded in a poll.
type FieldError struct {
	Field   string
	Kind    string
	Address uint16
	Err     error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s register %d (%s): %v", e.Kind, e.Address, e.Field, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// poll reads every request of the device and returns the fields it got
// and an error per field it did not. A transport error ends the poll.
func (d *device) poll() ([]protocols.Field, []*FieldError, error) {
	vals := make([]protocols.Value, len(d.fields))
	got := make([]bool, len(d.fields))
	var ferrs []*FieldError
	err := d.bus.do(d.unit, func(c Client) error {
		for _, r := range d.reqs {
			err := d.read(c, r, vals, got)
			var ex *ExceptionError
			if err == nil {
				continue
			}
			if !errors.As(err, &ex) {
				return err
			}
			// One refused register must not cost the others: read the
			// request's fields one by one.
			for _, fi := range r.fields {
				f := d.fields[fi]
				one := request{kind: f.kind, start: f.Address, count: uint16(f.width), fields: []int{fi}}
				if err := d.read(c, one, vals, got); err != nil {
					if !errors.As(err, &ex) {
						return err
					}
					ferrs = append(ferrs, &FieldError{Field: f.Name, Kind: f.kind, Address: f.Address, Err: err})
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	var out []protocols.Field
	for i, f := range d.fields {
		if got[i] {
			if vals[i].Kind() == 0 {
				continue
			}
			out = append(out, protocols.Field{Key: f.Name, Value: vals[i]})
		}
	}
	// Decoding errors were recorded as invalid values; report them.
	for i, f := range d.fields {
		if got[i] && vals[i].Kind() == 0 {
			ferrs = append(ferrs, &FieldError{Field: f.Name, Kind: f.kind, Address: f.Address, Err: ErrNotFinite})
		}
	}
	return out, ferrs, nil
}

// read performs one request and decodes its fields into vals.
func (d *device) read(c Client, r request, vals []protocols.Value, got []bool) error {
	if isBitKind(r.kind) {
		bits, err := c.ReadBits(r.start, r.count, r.kind == KindDiscrete)
		if err != nil {
			return err
		}
		if len(bits) != int(r.count) {
			return fmt.Errorf("asked for %d bits, got %d", r.count, len(bits))
		}
		for _, fi := range r.fields {
			vals[fi], got[fi] = protocols.Bool(bits[d.fields[fi].Address-r.start]), true
		}
		return nil
	}
	regs, err := c.ReadRegisters(r.start, r.count, r.kind == KindInput)
	if err != nil {
		return err
	}
	if len(regs) != int(r.count) {
		return fmt.Errorf("asked for %d registers, got %d", r.count, len(regs))
	}
	for _, fi := range r.fields {
		f := d.fields[fi]
		off := int(f.Address - r.start)
		scale, bit := 1.0, -1
		if f.Scale != nil {
			scale = *f.Scale
		}
		if f.Bit != nil {
			bit = *f.Bit
		}
		v, err := Decode(regs[off:off+f.width], f.Type, f.Order, bit, scale, f.Offset)
		if err != nil {
			v = protocols.Value{} // reported by poll
		}
		vals[fi], got[fi] = v, true
	}
	return nil
}

type inputMetrics struct {
	polls, pollErrors, fieldErrors, points, refused *metrics.Counter
}

// Run polls every device until ctx is done.
func (in *Input) Run(ctx context.Context, acc protocols.Accumulator) error {
	if in.log == nil {
		if err := in.Init(nil); err != nil {
			return err
		}
	}
	set := in.set
	if set == nil {
		set = metrics.NewSet()
	}
	m := &inputMetrics{
		polls:       set.GetOrCreateCounter(`citysense_input_polls_total{input="modbus"}`),
		pollErrors:  set.GetOrCreateCounter(`citysense_input_poll_errors_total{input="modbus"}`),
		fieldErrors: set.GetOrCreateCounter(`citysense_input_register_errors_total{input="modbus"}`),
		points:      set.GetOrCreateCounter(`citysense_input_points_total{input="modbus"}`),
		refused:     set.GetOrCreateCounter(`citysense_input_writes_refused_total{input="modbus"}`),
	}
	var wg sync.WaitGroup
	for _, d := range in.devices {
		wg.Go(func() { in.runDevice(ctx, d, acc, m) })
	}
	wg.Wait()
	for _, b := range in.buses {
		b.close()
	}
	return nil
}

// runDevice polls one device on its interval, aligned to the wall clock
// plus a random jitter; after a transport error it waits an exponentially
// growing number of intervals (up to backoff_max) before trying again.
func (in *Input) runDevice(ctx context.Context, d *device, acc protocols.Accumulator, m *inputMetrics) {
	var backoff time.Duration
	var retryAt time.Time
	var lastLog time.Time
	suppressed := 0
	logf := func(msg string, args ...any) {
		if time.Since(lastLog) < 10*time.Second {
			suppressed++
			return
		}
		if suppressed > 0 {
			args = append(args, "suppressed", suppressed)
		}
		lastLog, suppressed = time.Now(), 0
		in.log.Warn(msg, args...)
	}
	for {
		tick := time.Now().Truncate(d.interval).Add(d.interval)
		wake := tick
		if j := in.Jitter.D(); j > 0 {
			wake = wake.Add(rand.N(j))
		}
		t := time.NewTimer(time.Until(wake))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if wake.Before(retryAt) {
			continue
		}
		m.polls.Inc()
		fields, ferrs, err := d.poll()
		if err != nil {
			m.pollErrors.Inc()
			backoff = min(max(2*backoff, d.interval), in.BackoffMax.D())
			retryAt = time.Now().Add(backoff)
			logf("modbus poll failed, backing off", "device", d.name, "err", err, "retry_in", backoff)
			continue
		}
		if backoff > 0 {
			in.log.Info("modbus device answers again", "device", d.name)
		}
		backoff, retryAt = 0, time.Time{}
		if len(ferrs) > 0 {
			m.fieldErrors.AddInt64(int64(len(ferrs)))
			logf("modbus registers not read", "device", d.name, "failed", len(ferrs), "first", ferrs[0].Error())
		}
		if len(fields) == 0 {
			continue
		}
		p := protocols.Point{Measurement: d.measurement, Tags: slices.Clone(d.tags), Fields: fields, Time: tick.UnixNano()}
		// A refused write is offered again until the next poll is due;
		// after that the fresher reading replaces it.
		for {
			err := acc.Write(ctx, []protocols.Point{p})
			if err == nil {
				m.points.Inc()
				break
			}
			if ctx.Err() != nil {
				return
			}
			m.refused.Inc()
			if time.Until(tick.Add(d.interval)) < 200*time.Millisecond {
				logf("modbus reading dropped: the buffer refused it until the next poll", "device", d.name, "err", err)
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// Interface guards.
var (
	_ protocols.Input        = (*Input)(nil)
	_ protocols.SampleConfig = (*Input)(nil)
)
