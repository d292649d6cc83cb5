package store

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"

	"github.com/klauspost/compress/zstd"
)

// A block is one bbolt value: the chunks of many series of one group
// (measurement + field) in one window (raw) or one day (rollups), ordered by
// series id, zstd-compressed together. A chunk is k streams (3 for raw, 10
// for rollups); the block stores them column-wise:
//
//	version  1 byte
//	k        uvarint
//	count    uvarint
//	count × (id delta uvarint, k × stream length uvarint)
//	stream 0 of every chunk, back to back, then stream 1 of every chunk, ...
//
// Its key is window or day start (8 bytes, sign-flipped big endian) | group
// id (4 bytes) | first series id (4 bytes): time first, so that each write
// appends at the end of its partition's key space and bbolt rewrites no
// neighbouring pages (keyed group first, a day's writes rewrote about as
// much as they wrote). Blocks partition the id space: a block holds the ids
// from its own first id up to the next block's first id.
//
// Why many series per value: a bbolt key costs about 16 bytes of page
// element plus page slack, which for one key per series per 2-hour window
// is 0.24 bytes per point, a third of the whole budget; and zstd needs
// kilobytes of similar data to build good entropy tables. Grouping by field
// keeps similar numbers together (all pm25 deltas, all humidity deltas), and
// storing streams column-wise puts all time deltas (mostly zero) together
// and all value deltas together.

const blockVersion = 1

// targetBlockSize is the uncompressed size at which a block is closed: big
// enough for zstd to learn the data, small enough that reading one series
// decompresses little else.
var targetBlockSize = 64 << 10

const keyLen = 16

func blockKey(start int64, gid uint32, first uint32) []byte {
	k := make([]byte, keyLen)
	binary.BigEndian.PutUint64(k, uint64(start)^(1<<63))
	binary.BigEndian.PutUint32(k[8:], gid)
	binary.BigEndian.PutUint32(k[12:], first)
	return k
}

func parseBlockKey(k []byte) (start int64, gid uint32, first uint32, ok bool) {
	if len(k) != keyLen {
		return 0, 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(k) ^ (1 << 63)), binary.BigEndian.Uint32(k[8:]), binary.BigEndian.Uint32(k[12:]), true
}

// entry is one encoded chunk on its way into a block.
type entry struct {
	id      uint32
	streams [][]byte
}

func (e *entry) size() int {
	n := 0
	for _, s := range e.streams {
		n += len(s)
	}
	return n
}

// codec compresses and decompresses blocks. Its encoder and decoder are
// safe for concurrent use.
type codec struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

func newCodec() (*codec, error) {
	// Better compression costs about twice the CPU of the default level
	// on these small blocks, which is still a few ns per point, and saves
	// about a tenth of the bytes.
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression),
		zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithDecoderMaxMemory(64<<20))
	if err != nil {
		enc.Close()
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &codec{enc: enc, dec: dec}, nil
}

func (c *codec) close() {
	c.enc.Close()
	c.dec.Close()
}

// packBlocks splits entries (sorted by id) into blocks of about
// targetBlockSize and calls emit with each block's first id and its
// compressed bytes.
func (c *codec) packBlocks(entries []entry, emit func(first uint32, data []byte) error) error {
	var raw []byte
	for len(entries) > 0 {
		n, size := 0, 0
		for n < len(entries) && (n == 0 || size+entries[n].size() <= targetBlockSize) {
			size += entries[n].size()
			n++
		}
		raw = appendBlock(raw[:0], entries[:n])
		if err := emit(entries[0].id, c.enc.EncodeAll(raw, make([]byte, 0, len(raw)/3))); err != nil {
			return err
		}
		entries = entries[n:]
	}
	return nil
}

func appendBlock(dst []byte, entries []entry) []byte {
	k := len(entries[0].streams)
	dst = append(dst, blockVersion)
	dst = binary.AppendUvarint(dst, uint64(k))
	dst = binary.AppendUvarint(dst, uint64(len(entries)))
	prev := uint32(0)
	for _, e := range entries {
		dst = binary.AppendUvarint(dst, uint64(e.id-prev))
		for _, st := range e.streams {
			dst = binary.AppendUvarint(dst, uint64(len(st)))
		}
		prev = e.id
	}
	for j := range k {
		for _, e := range entries {
			dst = append(dst, e.streams[j]...)
		}
	}
	return dst
}

// block is a decompressed block: the ids it holds and where each chunk's
// streams are.
type block struct {
	k    int
	ids  []uint32
	offs [][]int // stream j of chunk i is data[offs[j][i]:offs[j][i+1]]
	data []byte
}

func (c *codec) decodeBlock(src []byte) (*block, error) {
	raw, err := c.dec.DecodeAll(src, nil)
	if err != nil {
		return nil, fmt.Errorf("decompress block: %w", err)
	}
	r := reader{b: raw}
	if v := r.byte(); v != blockVersion {
		return nil, fmt.Errorf("%w: block version %d", errCorrupt, v)
	}
	k := int(r.uvarint())
	n := r.count()
	if r.err != nil || k < 1 || k > 16 {
		return nil, errCorrupt
	}
	b := &block{k: k, ids: make([]uint32, 0, n), offs: make([][]int, k)}
	lens := make([]uint64, n*k)
	var id uint64
	for i := range n {
		id += r.uvarint()
		if id > 1<<32-1 {
			return nil, errCorrupt
		}
		b.ids = append(b.ids, uint32(id))
		for j := range k {
			lens[i*k+j] = r.uvarint()
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	off := uint64(0)
	for j := range k {
		o := make([]int, 0, n+1)
		for i := range n {
			o = append(o, int(off))
			off += lens[i*k+j]
			if off > uint64(len(r.b)) {
				return nil, fmt.Errorf("%w: block chunks overrun the block", errCorrupt)
			}
		}
		b.offs[j] = append(o, int(off))
	}
	if off != uint64(len(r.b)) {
		return nil, fmt.Errorf("%w: block chunks hold %d bytes, %d present", errCorrupt, off, len(r.b))
	}
	b.data = r.b
	return b, nil
}

// streams returns the streams of chunk i; they alias the block.
func (b *block) streams(i int) [][]byte { return b.streamsInto(i, nil) }

// streamsInto is streams appending to dst[:0].
func (b *block) streamsInto(i int, dst [][]byte) [][]byte {
	if cap(dst) < b.k {
		dst = make([][]byte, 0, b.k)
	}
	dst = dst[:0]
	for j := range b.k {
		dst = append(dst, b.data[b.offs[j][i]:b.offs[j][i+1]])
	}
	return dst
}

// chunk returns the encoded chunk of id, if the block holds it.
func (b *block) chunk(id uint32) ([][]byte, bool) { return b.chunkInto(id, nil) }

// chunkInto is chunk with the streams in dst's memory.
func (b *block) chunkInto(id uint32, dst [][]byte) ([][]byte, bool) {
	i, ok := slices.BinarySearch(b.ids, id)
	if !ok {
		return dst[:0], false
	}
	return b.streamsInto(i, dst), true
}

// entries returns every chunk of the block; the data aliases the block.
func (b *block) entries() []entry {
	out := make([]entry, len(b.ids))
	for i, id := range b.ids {
		out[i] = entry{id: id, streams: b.streams(i)}
	}
	return out
}
