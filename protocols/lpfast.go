package protocols

import (
	"bytes"
	"math"
	"strconv"
)

// The fast path parses the lines that make up nearly all real traffic —
// no escapes, no quoted strings, numeric or boolean fields and a
// timestamp — without the general decoder, which spends most of its time
// on the cases those lines do not have. Any line it is not sure about is
// handed to the general decoder unchanged, so the two never disagree on
// what a line means or on the error a bad line gets; FuzzFastLine checks
// that whatever the fast path accepts, the general decoder decodes to the
// same point.

// lineKind says how a line must be decoded.
type lineKind uint8

const (
	lineFast      lineKind = iota // may take the fast path
	lineSingle                    // the general decoder, on this line alone
	lineRemainder                 // the general decoder, on this line and every one after
)

// classify looks at one line (without its '\n'). A quoted string may
// span lines, so a line with an odd number of quotes, or quotes and
// backslashes together (escaped quotes make counting meaningless), or a
// backslash at its end, sends it and every line after to the general
// decoder; so does a carriage return, which is newline business. Other
// quotes and backslashes, control bytes, non-ASCII text and lines that
// start with whitespace or '#' go to the general decoder alone.
func classify(line []byte) lineKind {
	k := lineFast
	if line[0] == ' ' || line[0] == '\t' || line[0] == '#' {
		k = lineSingle
	}
	quotes, backslash := 0, false
	for _, c := range line {
		switch c {
		case '"':
			quotes++
		case '\\':
			backslash = true
		case '\r':
			return lineRemainder
		case '\t':
			k = lineSingle
		default:
			// Control bytes and non-ASCII (which must be valid UTF-8)
			// are the general decoder's to judge.
			if c < 0x20 || c >= 0x7f {
				k = lineSingle
			}
		}
	}
	switch {
	case quotes%2 == 1, quotes > 0 && backslash, line[len(line)-1] == '\\':
		return lineRemainder
	case quotes > 0, backslash:
		return lineSingle
	}
	return k
}

// fastLine parses a line that classify called lineFast. ok is false when
// the line is not of the simple shape; the caller then uses the general
// decoder, which also finds the error if there is one.
func (st *decodeState) fastLine(line []byte, mult int64) (p Point, ok bool) {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return p, false
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 || sp2 == len(rest)-1 || bytes.IndexByte(rest[sp2+1:], ' ') >= 0 {
		// No timestamp (the general decoder applies the default time),
		// doubled or trailing spaces: not the simple shape.
		return p, false
	}
	key, fieldSec, tsBytes := line[:sp1], rest[:sp2], rest[sp2+1:]

	ts, ok := parseDecimalInt(tsBytes)
	if !ok || ts > math.MaxInt64/mult || ts < math.MinInt64/mult {
		return p, false
	}

	st.tags, st.fields = st.tags[:0], st.fields[:0]
	comma := bytes.IndexByte(key, ',')
	meas := key
	if comma >= 0 {
		meas = key[:comma]
		tagSec := key[comma+1:]
		for len(tagSec) > 0 {
			var pair []byte
			pair, tagSec = cut(tagSec)
			eq := bytes.IndexByte(pair, '=')
			if eq <= 0 || eq == len(pair)-1 || bytes.IndexByte(pair[eq+1:], '=') >= 0 {
				return p, false
			}
			i := len(st.tags)
			st.tags = append(st.tags, Tag{Key: st.prev(&st.prevTagKeys, i, pair[:eq]), Value: st.intern(pair[eq+1:])})
		}
		if key[len(key)-1] == ',' {
			return p, false // a trailing comma
		}
	}
	if len(meas) == 0 || bytes.IndexByte(meas, '=') >= 0 {
		return p, false
	}
	if fieldSec[len(fieldSec)-1] == ',' {
		return p, false
	}
	for len(fieldSec) > 0 {
		var pair []byte
		pair, fieldSec = cut(fieldSec)
		eq := bytes.IndexByte(pair, '=')
		if eq <= 0 || eq == len(pair)-1 || bytes.IndexByte(pair[eq+1:], '=') >= 0 {
			return p, false
		}
		v, ok := fastValue(pair[eq+1:])
		if !ok {
			return p, false
		}
		st.fields = append(st.fields, Field{Key: st.prev(&st.prevFieldKeys, len(st.fields), pair[:eq]), Value: v})
	}
	p.Measurement = st.prev(&st.prevMeas, 0, meas)
	p.Time = ts * mult
	p.Tags = st.carveTags(len(st.tags))
	copy(p.Tags, st.tags)
	p.Fields = st.carveFields(len(st.fields))
	copy(p.Fields, st.fields)
	return p, true
}

// cut splits s at its first comma; an empty element (",,") makes the
// caller's '=' check fail.
func cut(s []byte) (elem, rest []byte) {
	if i := bytes.IndexByte(s, ','); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, nil
}

// parseDecimalInt reads -?[0-9]+ into an int64.
func parseDecimalInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// fastValue reads a field value of the simple shapes: an integer with i,
// an unsigned with u, a boolean literal or a plain decimal float.
func fastValue(b []byte) (Value, bool) {
	switch last := b[len(b)-1]; {
	case last == 'i':
		n, ok := parseDecimalInt(b[:len(b)-1])
		return Int(n), ok
	case last == 'u':
		digits := b[:len(b)-1]
		if len(digits) == 0 || len(digits) > 20 {
			return Value{}, false
		}
		for _, c := range digits {
			if c < '0' || c > '9' {
				return Value{}, false
			}
		}
		n, err := strconv.ParseUint(string(digits), 10, 64)
		return Uint(n), err == nil
	}
	switch string(b) {
	case "t", "T", "true", "True", "TRUE":
		return Bool(true), true
	case "f", "F", "false", "False", "FALSE":
		return Bool(false), true
	}
	if !plainFloat(b) {
		return Value{}, false
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsInf(f, 0) {
		return Value{}, false
	}
	return Float(f), true
}

// plainFloat accepts -?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?, a subset of
// what line protocol allows, chosen so that the general decoder agrees.
func plainFloat(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if digits() == 0 {
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}

// prev interns b, the i-th name of its kind on a line (tag key, field
// key, measurement), looking first at the name the previous line had in
// that place: in a batch the keys repeat line after line, and comparing
// a few bytes is cheaper than hashing them for the intern map.
func (st *decodeState) prev(names *[]string, i int, b []byte) string {
	if i < len(*names) && (*names)[i] == string(b) {
		return (*names)[i]
	}
	s := st.intern(b)
	if i < len(*names) {
		(*names)[i] = s
	} else if i == len(*names) && i < 64 {
		*names = append(*names, s)
	}
	return s
}
