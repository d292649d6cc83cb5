package buffer

import (
	"fmt"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/citysense/citysense/protocols"
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
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
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

// decompress undoes the batch's codec.
func (t *Transcoder) decompress(b *Batch) ([]byte, error) {
	switch b.Codec {
	case Zstd:
		return t.dec.DecodeAll(b.Body, nil)
	case S2:
		if n, err := s2.DecodedLen(b.Body); err != nil || n > maxBodyBytes {
			return nil, fmt.Errorf("s2 body of %d bytes decoded: %w", n, ErrCorrupt)
		}
		return s2.Decode(nil, b.Body)
	}
	return nil, fmt.Errorf("unknown codec %d", b.Codec)
}

// Lines returns the batch's points as line protocol, ns precision.
func (t *Transcoder) Lines(b *Batch) ([]byte, error) {
	data, err := t.decompress(b)
	if err != nil || b.Format == LineProtocol {
		return data, err
	}
	if b.Format != Columnar {
		return nil, fmt.Errorf("unknown batch format %d", b.Format)
	}
	return columnarLines(nil, data, b.Points)
}

// Wire returns the body an output sends for b: line protocol compressed
// with b.Codec, the Content-Encoding the collector expects. Batches stored
// as line protocol go out as they are.
func (t *Transcoder) Wire(b *Batch) ([]byte, error) {
	if b.Format == LineProtocol {
		return b.Body, nil
	}
	lp, err := t.Lines(b)
	if err != nil {
		return nil, err
	}
	return compress(t.enc, b.Codec, lp), nil
}

// columnarLines appends the points of a columnar body to dst as line
// protocol. points, when positive, is how many the index says the batch
// holds; another count means damage.
func columnarLines(dst, body []byte, points int) ([]byte, error) {
	enc := encoders.Get().(*protocols.Encoder)
	defer encoders.Put(enc)
	enc.Reset()
	n := 0
	err := decodeColumnar(body, func(p *protocols.Point) error {
		if err := enc.Encode(p); err != nil {
			return fmt.Errorf("%w: point %d: %w", errColumnar, n, err)
		}
		n++
		return nil
	})
	if err == nil && points > 0 && n != points {
		err = fmt.Errorf("%w: %d points, the index says %d", errColumnar, n, points)
	}
	if err != nil {
		return nil, err
	}
	dst = append(dst, enc.Bytes()...)
	enc.Reset()
	return dst, nil
}
