package modbus

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// ProbeOptions say what Probe reads.
type ProbeOptions struct {
	Address string // as in a device's address
	UnitID  int
	Kind    string // holding, input, coil, discrete
	Start   int
	Count   int
	Timeout time.Duration

	newClient ClientFactory // nil: NewClient
}

// RegisterFlags defines the probe's flags on fs with their defaults, so that
// a main needs only fs.Parse and Probe.
func (o *ProbeOptions) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Address, "address", "tcp://127.0.0.1:502", "device address: tcp://host:port or rtu:///dev/ttyUSB0?baud=9600&parity=N")
	fs.IntVar(&o.UnitID, "unit", 1, "unit (slave) id")
	fs.StringVar(&o.Kind, "kind", KindHolding, "holding, input, coil or discrete")
	fs.IntVar(&o.Start, "start", 0, "first register address (0-based, as on the wire)")
	fs.IntVar(&o.Count, "count", 10, "number of registers (1–125) or bits (1–2000)")
	fs.DurationVar(&o.Timeout, "timeout", DefaultTimeout, "time to wait for one answer")
}

func (o *ProbeOptions) check() (BusConfig, error) {
	cfg, err := parseAddress(o.Address)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	limit := maxRegistersPerRead
	switch o.Kind {
	case KindHolding, KindInput:
	case KindCoil, KindDiscrete:
		limit = maxBitsPerRead
	default:
		errs = append(errs, fmt.Errorf("kind: want holding, input, coil or discrete, got %q", o.Kind))
	}
	if o.UnitID < 0 || o.UnitID > 247 {
		errs = append(errs, fmt.Errorf("unit: %d out of range 0–247", o.UnitID))
	}
	if o.Count < 1 || o.Count > limit {
		errs = append(errs, fmt.Errorf("count: want 1–%d, got %d", limit, o.Count))
	}
	if o.Start < 0 || o.Start+o.Count > 65536 {
		errs = append(errs, fmt.Errorf("start: %d+%d runs past 65535", o.Start, o.Count))
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	cfg.Timeout = o.Timeout
	return cfg, errors.Join(errs...)
}

// Probe reads a range of registers from one device and prints each register
// raw and as 16-bit integers, and each run of two and four registers as
// 32- and 64-bit integers and floats in every word and byte order: the table
// an installer reads to find a device's register map. A range the device
// refuses is read again register by register, and the refused ones are
// shown with their exception.
func Probe(ctx context.Context, w io.Writer, opts ProbeOptions) error {
	cfg, err := opts.check()
	if err != nil {
		return err
	}
	newClient := opts.newClient
	if newClient == nil {
		newClient = NewClient
	}
	c, err := newClient(cfg)
	if err != nil {
		return err
	}
	if err := c.Open(); err != nil {
		return fmt.Errorf("connect %s: %w", cfg.URL, err)
	}
	defer c.Close()
	if err := c.SetUnitID(uint8(opts.UnitID)); err != nil {
		return err
	}
	start, count := uint16(opts.Start), uint16(opts.Count)
	fmt.Fprintf(w, "%s unit %d, %s %d–%d\n\n", cfg.URL, opts.UnitID, opts.Kind, opts.Start, opts.Start+opts.Count-1)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()

	if isBitKind(opts.Kind) {
		bits, errs, err := readBitsProbe(ctx, c, start, count, opts.Kind == KindDiscrete)
		if err != nil {
			return err
		}
		fmt.Fprintln(tw, "addr\tvalue")
		for i := range int(count) {
			if errs[i] != nil {
				fmt.Fprintf(tw, "%d\t%v\n", int(start)+i, errs[i])
				continue
			}
			fmt.Fprintf(tw, "%d\t%v\n", int(start)+i, bits[i])
		}
		return nil
	}
	regs, errs, err := readRegsProbe(ctx, c, start, count, opts.Kind == KindInput)
	if err != nil {
		return err
	}
	fmt.Fprintln(tw, "addr\thex\tuint16\tint16\tascii\tuint32 ABCD\tint32 ABCD\tint32 CDAB\tfloat32 ABCD\tfloat32 CDAB\tfloat32 BADC\tfloat32 DCBA\tfloat64 ABCD\tfloat64 DCBA")
	ok := func(i, n int) bool {
		if i+n > len(regs) {
			return false
		}
		for j := i; j < i+n; j++ {
			if errs[j] != nil {
				return false
			}
		}
		return true
	}
	for i := range regs {
		addr := int(start) + i
		if errs[i] != nil {
			fmt.Fprintf(tw, "%d\t%v\n", addr, errs[i])
			continue
		}
		r := regs[i]
		cols := []string{strconv.Itoa(addr), fmt.Sprintf("%04x", r), strconv.Itoa(int(r)), strconv.Itoa(int(int16(r))), ascii(r)}
		if ok(i, 2) {
			two := regs[i : i+2]
			u, _ := Decode(two, TypeUint32, OrderABCD, -1, 1, 0)
			a, _ := Decode(two, TypeInt32, OrderABCD, -1, 1, 0)
			c, _ := Decode(two, TypeInt32, OrderCDAB, -1, 1, 0)
			cols = append(cols, fmtVal(u.IntV()), fmtVal(a.IntV()), fmtVal(c.IntV()))
			for _, o := range orders {
				cols = append(cols, fmtFloat(two, TypeFloat32, o))
			}
		} else {
			cols = append(cols, "", "", "", "", "", "", "")
		}
		if ok(i, 4) {
			cols = append(cols, fmtFloat(regs[i:i+4], TypeFloat64, OrderABCD), fmtFloat(regs[i:i+4], TypeFloat64, OrderDCBA))
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	return nil
}

func fmtVal(i int64) string { return strconv.FormatInt(i, 10) }

func fmtFloat(regs []uint16, typ, order string) string {
	b := ordered(regs, order)
	var f float64
	if typ == TypeFloat32 {
		f = float64(math.Float32frombits(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])))
	} else {
		var u uint64
		for _, x := range b {
			u = u<<8 | uint64(x)
		}
		f = math.Float64frombits(u)
	}
	if f != 0 && (math.Abs(f) < 1e-12 || math.Abs(f) > 1e15) {
		return fmt.Sprintf("%.3g", f) // noise: shown short
	}
	return strconv.FormatFloat(f, 'g', 8, 64)
}

func ascii(r uint16) string {
	out := []byte{byte(r >> 8), byte(r)}
	for i, c := range out {
		if c < 0x20 || c > 0x7e {
			out[i] = '.'
		}
	}
	return string(out)
}

// readRegsProbe reads the range, falling back to one register at a time
// when the device answers the whole range with an exception.
func readRegsProbe(ctx context.Context, c Client, start, count uint16, input bool) ([]uint16, []error, error) {
	errs := make([]error, count)
	regs, err := c.ReadRegisters(start, count, input)
	var ex *ExceptionError
	if err == nil {
		return regs, errs, nil
	}
	if !errors.As(err, &ex) {
		return nil, nil, err
	}
	regs = make([]uint16, count)
	for i := range count {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		v, err := c.ReadRegisters(start+i, 1, input)
		switch {
		case err == nil && len(v) == 1:
			regs[i] = v[0]
		case errors.As(err, &ex):
			errs[i] = err
		case err != nil:
			return nil, nil, err
		}
	}
	return regs, errs, nil
}

func readBitsProbe(ctx context.Context, c Client, start, count uint16, discrete bool) ([]bool, []error, error) {
	errs := make([]error, count)
	bits, err := c.ReadBits(start, count, discrete)
	var ex *ExceptionError
	if err == nil {
		return bits, errs, nil
	}
	if !errors.As(err, &ex) {
		return nil, nil, err
	}
	bits = make([]bool, count)
	for i := range count {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		v, err := c.ReadBits(start+i, 1, discrete)
		switch {
		case err == nil && len(v) == 1:
			bits[i] = v[0]
		case errors.As(err, &ex):
			errs[i] = err
		case err != nil:
			return nil, nil, err
		}
	}
	return bits, errs, nil
}
