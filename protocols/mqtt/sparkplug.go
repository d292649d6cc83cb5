package mqtt

import (
	"fmt"
	"math"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/citysense/citysense/protocols"
)

// FormatSparkplugB reads Eclipse Sparkplug B payloads (protobuf) on topics
// spBv1.0/<group>/<NBIRTH|NDATA|DBIRTH|DDATA>/<edge node>[/<device>].
const FormatSparkplugB = "sparkplug_b"

// Sparkplug B data types (Sparkplug 3.0, section 6.4.16).
const (
	spInt8     = 1
	spInt16    = 2
	spInt32    = 3
	spInt64    = 4
	spUInt8    = 5
	spUInt16   = 6
	spUInt32   = 7
	spUInt64   = 8
	spFloat    = 9
	spDouble   = 10
	spBoolean  = 11
	spString   = 12
	spDateTime = 13
	spText     = 14
)

// spMetric is one decoded Sparkplug metric.
type spMetric struct {
	name     string
	alias    uint64
	hasAlias bool
	ts       uint64 // ms; 0: the payload's
	datatype uint32
	isNull   bool
	value    protocols.Value
}

// sparkplugParser maps each DATA (and BIRTH) message to points: one point
// per distinct metric timestamp, tags group, edge_node and device, metric
// names as fields ("/" becomes "_"). Aliases learned from the BIRTH of a
// node or device resolve DATA metrics that carry only an alias. STATE,
// NDEATH, DDEATH and NCMD/DCMD carry no readings and yield nothing.
type sparkplugParser struct {
	mu      sync.Mutex
	aliases map[string]map[uint64]string // node or device topic → alias → name
}

func newSparkplugParser() *sparkplugParser {
	return &sparkplugParser{aliases: map[string]map[uint64]string{}}
}

func (sp *sparkplugParser) parse(dst []protocols.Point, payload []byte, env *envelope, a *alloc) ([]protocols.Point, error) {
	group, typ, node, device, ok := sparkplugTopic(env.topic)
	if !ok {
		return dst, fmt.Errorf("sparkplug: topic %q is not spBv1.0/<group>/<type>/<edge node>[/<device>]", env.topic)
	}
	switch typ {
	case "NBIRTH", "DBIRTH", "NDATA", "DDATA":
	default:
		return dst, nil
	}
	ts, metrics, err := decodeSparkplug(payload)
	if err != nil {
		return dst, fmt.Errorf("sparkplug: %w", err)
	}
	key := group + "/" + node + "/" + device
	sp.mu.Lock()
	if typ == "NBIRTH" || typ == "DBIRTH" {
		m := map[uint64]string{}
		for _, mt := range metrics {
			if mt.hasAlias && mt.name != "" {
				m[mt.alias] = mt.name
			}
		}
		sp.aliases[key] = m
	}
	known := sp.aliases[key]
	sp.mu.Unlock()

	extra := []protocols.Tag{{Key: "edge_node", Value: node}, {Key: "group", Value: group}}
	if device != "" {
		extra = append(extra, protocols.Tag{Key: "device", Value: device})
	}
	// Group the metrics by timestamp, in order of first appearance.
	var order []uint64
	byTS := map[uint64][]protocols.Field{}
	var firstErr error
	for _, mt := range metrics {
		if mt.isNull || mt.value.Kind() == protocols.KindInvalid {
			continue
		}
		name := mt.name
		if name == "" && mt.hasAlias {
			name = known[mt.alias]
		}
		if name == "" {
			if firstErr == nil {
				firstErr = fmt.Errorf("sparkplug: metric alias %d unknown (no BIRTH seen for %s)", mt.alias, key)
			}
			continue
		}
		t := mt.ts
		if t == 0 {
			t = ts
		}
		if _, seen := byTS[t]; !seen {
			order = append(order, t)
		}
		byTS[t] = append(byTS[t], protocols.Field{Key: a.intern([]byte(strings.ReplaceAll(name, "/", "_"))), Value: mt.value})
	}
	for _, t := range order {
		nsec := env.now
		if t != 0 {
			if t > math.MaxInt64/1_000_000 {
				return dst, fmt.Errorf("sparkplug: timestamp %d out of range", t)
			}
			nsec = int64(t) * 1_000_000
		}
		p, err := a.point(env.measurement, env, extra, byTS[t], nsec)
		if err != nil {
			return dst, fmt.Errorf("sparkplug: %w", err)
		}
		dst = append(dst, p)
	}
	return dst, firstErr
}

// sparkplugTopic splits spBv1.0/<group>/<type>/<edge node>[/<device>].
func sparkplugTopic(topic string) (group, typ, node, device string, ok bool) {
	parts := strings.Split(topic, "/")
	if len(parts) < 4 || len(parts) > 5 || parts[0] != "spBv1.0" {
		return "", "", "", "", false
	}
	if len(parts) == 5 {
		device = parts[4]
	}
	return parts[1], parts[2], parts[3], device, parts[1] != "" && parts[3] != ""
}

// decodeSparkplug reads a Sparkplug B Payload: timestamp (1) and metrics
// (2); other fields are skipped.
func decodeSparkplug(b []byte) (ts uint64, metrics []spMetric, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, nil, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, nil, protowire.ParseError(n)
			}
			ts, b = v, b[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, nil, protowire.ParseError(n)
			}
			m, err := decodeMetric(v)
			if err != nil {
				return 0, nil, fmt.Errorf("metric %d: %w", len(metrics), err)
			}
			metrics = append(metrics, m)
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return 0, nil, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return ts, metrics, nil
}

func decodeMetric(b []byte) (spMetric, error) {
	var m spMetric
	var raw struct {
		u64  uint64
		f32  uint32
		f64  uint64
		s    string
		kind int // field number of the value seen
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return m, protowire.ParseError(n)
		}
		b = b[n:]
		var consumed int
		switch {
		case num == 1 && typ == protowire.BytesType:
			var v []byte
			v, consumed = protowire.ConsumeBytes(b)
			m.name = string(v)
		case (num == 2 || num == 3 || num == 4 || num == 7 || num == 10 || num == 11 || num == 14) && typ == protowire.VarintType:
			var v uint64
			v, consumed = protowire.ConsumeVarint(b)
			switch num {
			case 2:
				m.alias, m.hasAlias = v, true
			case 3:
				m.ts = v
			case 4:
				m.datatype = uint32(v)
			case 7:
				m.isNull = v != 0
			default:
				raw.u64, raw.kind = v, int(num)
			}
		case num == 12 && typ == protowire.Fixed32Type:
			raw.f32, consumed = protowire.ConsumeFixed32(b)
			raw.kind = 12
		case num == 13 && typ == protowire.Fixed64Type:
			raw.f64, consumed = protowire.ConsumeFixed64(b)
			raw.kind = 13
		case num == 15 && typ == protowire.BytesType:
			var v []byte
			v, consumed = protowire.ConsumeBytes(b)
			raw.s, raw.kind = string(v), 15
		default:
			consumed = protowire.ConsumeFieldValue(num, typ, b)
		}
		if consumed < 0 {
			return m, protowire.ParseError(consumed)
		}
		b = b[consumed:]
	}
	// The value by declared data type; int_value holds signed types in
	// two's complement of their width.
	switch {
	case raw.kind == 0:
	case m.datatype == spInt8 && raw.kind == 10:
		m.value = protocols.Int(int64(int8(raw.u64)))
	case m.datatype == spInt16 && raw.kind == 10:
		m.value = protocols.Int(int64(int16(raw.u64)))
	case m.datatype == spInt32 && raw.kind == 10:
		m.value = protocols.Int(int64(int32(raw.u64)))
	case (m.datatype == spUInt8 || m.datatype == spUInt16 || m.datatype == spUInt32) && raw.kind == 10:
		m.value = protocols.Int(int64(uint32(raw.u64)))
	case m.datatype == spInt64 && raw.kind == 11:
		m.value = protocols.Int(int64(raw.u64))
	case (m.datatype == spUInt64 || m.datatype == spDateTime) && raw.kind == 11:
		m.value = protocols.Uint(raw.u64)
	case m.datatype == spFloat && raw.kind == 12:
		m.value = finite(float64(math.Float32frombits(raw.f32)))
	case m.datatype == spDouble && raw.kind == 13:
		m.value = finite(math.Float64frombits(raw.f64))
	case m.datatype == spBoolean && raw.kind == 14:
		m.value = protocols.Bool(raw.u64 != 0)
	case (m.datatype == spString || m.datatype == spText) && raw.kind == 15:
		m.value = protocols.String(raw.s)
	case raw.kind == 10 || raw.kind == 11:
		m.value = protocols.Int(int64(raw.u64)) // undeclared type: as sent
	}
	return m, nil
}

// finite drops NaN and ±Inf, which line protocol cannot carry.
func finite(f float64) protocols.Value {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return protocols.Value{}
	}
	return protocols.Float(f)
}
