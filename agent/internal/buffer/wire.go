package buffer

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/citysense/citysense/protocols"
)

// Compression windows: the history a zstd encoder keeps, and so its
// memory. A columnar batch of 5,000 readings is 20–130 KiB; its line
// protocol about 450 KiB, in which repeats are a tick apart.
const (
	colWindow  = 256 << 10
	wireWindow = 128 << 10
)

// maxBodyBytes bounds a decompressed body: a batch of BatchPoints points
// is far below it, so more means damage, not data.
const maxBodyBytes = 256 << 20

// Transcoder turns stored batches into what outputs send: line protocol
// (ns precision), compressed with the batch's codec for NATS. Its methods
// are safe for concurrent use; Close releases its zstd coders.
type Transcoder struct {
	dec *zstd.Decoder
	enc *zstd.Encoder
}

// NewTranscoder returns a Transcoder. Its coders are made for a gateway:
// one goroutine each and the smaller encoder tables.
func NewTranscoder() (*Transcoder, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxBodyBytes), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	// The fastest level: on line protocol it compresses as well as the
	// default one (measured 8.6 against 8.7 B/reading on sim batches) in
	// two thirds of the time, and the uplink compresses every batch.
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true),
		zstd.WithWindowSize(wireWindow))
	if err != nil {
		dec.Close()
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	return &Transcoder{dec: dec, enc: enc}, nil
}

// Close releases the coders.
func (t *Transcoder) Close() {
	t.dec.Close()
	t.enc.Close()
}

// decompress undoes the batch's codec, appending to dst.
func (t *Transcoder) decompress(dst []byte, b *Batch) ([]byte, error) {
	switch b.Codec {
	case Zstd:
		return t.dec.DecodeAll(b.Body, dst)
	case S2:
		n, err := s2.DecodedLen(b.Body)
		if err != nil || n > maxBodyBytes {
			return nil, fmt.Errorf("s2 body of %d bytes decoded: %w", n, ErrCorrupt)
		}
		out := slices.Grow(dst, n)
		if _, err := s2.Decode(out[len(dst):len(dst)+n], b.Body); err != nil {
			return nil, err
		}
		return out[:len(dst)+n], nil
	}
	return nil, fmt.Errorf("unknown codec %d", b.Codec)
}

// scratch holds decompressed bodies and line protocol between uses: a
// batch's line protocol is about half a megabyte, and making it anew for
// every batch made the agent's heap swing by megabytes under load.
var scratch = newFreeList(func() *[]byte { return new([]byte) })

// maxPooled is the largest buffer kept for reuse: the line protocol of a
// default batch (5,000 readings) is about 450 KiB; a larger batch_points
// makes buffers that are not worth keeping on a small board.
const maxPooled = 1 << 20

func putScratch(b *[]byte) {
	if cap(*b) <= maxPooled {
		*b = (*b)[:0]
		scratch.put(b)
	}
}

// Lines returns the batch's points as line protocol, ns precision.
func (t *Transcoder) Lines(b *Batch) ([]byte, error) {
	return t.appendLines(nil, b)
}

func (t *Transcoder) appendLines(dst []byte, b *Batch) ([]byte, error) {
	if b.Format == LineProtocol {
		return t.decompress(dst, b)
	}
	if b.Format != Columnar {
		return nil, fmt.Errorf("unknown batch format %d", b.Format)
	}
	body := scratch.get()
	defer putScratch(body)
	var err error
	if *body, err = t.decompress((*body)[:0], b); err != nil {
		return nil, err
	}
	return columnarLines(dst, *body, b.Points)
}

// Wire returns the body an output sends for b: line protocol compressed
// with b.Codec, the Content-Encoding the collector expects. Batches stored
// as line protocol go out as they are.
func (t *Transcoder) Wire(b *Batch) ([]byte, error) {
	if b.Format == LineProtocol {
		return b.Body, nil
	}
	lp := scratch.get()
	defer putScratch(lp)
	var err error
	if *lp, err = t.appendLines((*lp)[:0], b); err != nil {
		return nil, err
	}
	return compress(t.enc, b.Codec, *lp), nil
}

// columnarLines appends the points of a columnar body to dst as line
// protocol, ns precision. points, when positive, is how many the index
// says the batch holds; another count means damage.
//
// It writes the text itself instead of through protocols.Encoder, three
// times faster: each block's measurement, tags and field keys are escaped
// once, and decimal values are written from their scaled integers. The
// escaping is line-protocol v2's; every point stored passed that encoder's
// checks on Append, so nothing here needs checking again.
func columnarLines(dst, body []byte, points int) ([]byte, error) {
	d := getColDecoder()
	defer d.release()
	if err := d.parse(body); err != nil {
		return nil, err
	}
	if points > 0 && len(d.times) != points {
		return nil, fmt.Errorf("%w: %d points, the index says %d", errColumnar, len(d.times), points)
	}
	var prefix, keyBuf []byte
	var keyEnds []int
	for bi := range d.blocks {
		h := &d.blocks[bi]
		prefix = appendLPEscaped(prefix[:0], d.strs[h.measurement], &measurementSpecials)
		for ti := range h.ntags {
			prefix = append(prefix, ',')
			prefix = appendLPEscaped(prefix, d.strs[d.tagStrs[h.tags+2*ti]], &keySpecials)
			prefix = append(prefix, '=')
			prefix = appendLPEscaped(prefix, d.strs[d.tagStrs[h.tags+2*ti+1]], &keySpecials)
		}
		prefix = append(prefix, ' ')
		keyBuf, keyEnds = keyBuf[:0], keyEnds[:0]
		for fi := range h.nkeys {
			if fi > 0 {
				keyBuf = append(keyBuf, ',')
			}
			keyBuf = appendLPEscaped(keyBuf, d.strs[d.keyStrs[h.keys+fi]], &keySpecials)
			keyBuf = append(keyBuf, '=')
			keyEnds = append(keyEnds, len(keyBuf))
		}
		for j := range h.rows {
			dst = append(dst, prefix...)
			for fi := range h.nkeys {
				from := 0
				if fi > 0 {
					from = keyEnds[fi-1]
				}
				dst = append(dst, keyBuf[from:keyEnds[fi]]...)
				vi := h.values + fi*h.rows + j
				if dec := d.decs[vi]; dec >= 0 {
					dst = appendDecimal(dst, d.ms[vi], int(dec))
					continue
				}
				v := d.vals[vi]
				switch v.Kind() {
				case protocols.KindFloat:
					dst = strconv.AppendFloat(dst, v.FloatV(), 'g', -1, 64)
				case protocols.KindInt:
					dst = append(strconv.AppendInt(dst, v.IntV(), 10), 'i')
				case protocols.KindUint:
					dst = append(strconv.AppendUint(dst, v.UintV(), 10), 'u')
				case protocols.KindBool:
					dst = strconv.AppendBool(dst, v.BoolV())
				case protocols.KindString:
					dst = append(dst, '"')
					dst = appendLPEscaped(dst, v.StringV(), &stringSpecials)
					dst = append(dst, '"')
				}
			}
			dst = append(dst, ' ')
			dst = strconv.AppendInt(dst, d.times[h.times+j], 10)
			dst = append(dst, '\n')
		}
	}
	return dst, nil
}

// Characters line protocol escapes with a backslash, by position.
var (
	measurementSpecials = byteSet(" ,")
	keySpecials         = byteSet(",= ") // tag keys and values, field keys
	stringSpecials      = byteSet("\\\"\n\r\t")
)

func byteSet(chars string) (set [256]bool) {
	for i := 0; i < len(chars); i++ {
		set[chars[i]] = true
	}
	return set
}

// appendLPEscaped appends s with the specials escaped as line protocol
// does: a backslash before the character, or before n, r, t for a
// newline, carriage return or tab inside a string.
func appendLPEscaped[S string | []byte](dst []byte, s S, specials *[256]bool) []byte {
	clean := true
	for i := 0; i < len(s) && clean; i++ {
		clean = !specials[s[i]]
	}
	if clean {
		return append(dst, s...)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !specials[c] {
			dst = append(dst, c)
			continue
		}
		switch c {
		case '\n':
			c = 'n'
		case '\r':
			c = 'r'
		case '\t':
			c = 't'
		}
		dst = append(dst, '\\', c)
	}
	return dst
}

// appendDecimal writes m / 10^d as a decimal number: 1234, 2 → 12.34;
// 5, 3 → 0.005. Parsing the text gives float64(m)/10^d exactly (|m| ≤
// 2^53, see maxExact).
func appendDecimal(dst []byte, m int64, d int) []byte {
	if d == 0 {
		return strconv.AppendInt(dst, m, 10)
	}
	if m < 0 {
		dst = append(dst, '-')
		m = -m
	}
	var buf [24]byte
	digits := strconv.AppendInt(buf[:0], m, 10)
	if len(digits) <= d {
		dst = append(dst, '0', '.')
		for range d - len(digits) {
			dst = append(dst, '0')
		}
		return append(dst, digits...)
	}
	dst = append(dst, digits[:len(digits)-d]...)
	dst = append(dst, '.')
	return append(dst, digits[len(digits)-d:]...)
}
