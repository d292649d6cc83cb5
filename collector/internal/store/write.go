package store

import (
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writeWindow writes one window of the head: its raw chunks into the raw
// partition of its day, merged with whatever that window already holds on
// disk (late points, a replay after a crash, an earlier forced flush). When
// the day was rolled up already (late points), the window's hours are then
// recomputed from the merged raw chunks and replaced in the day's rollups,
// so that they stay right whatever order or how often points arrive. Each
// file's transaction is fsync'd; only after all may the window's tickets be
// released. An open day's hours are not written: reads compute them from
// the raw chunks (and cache them) until the day is rolled up.
func (s *Store) writeWindow(w *headWindow) error {
	byGroup := map[uint32][]uint32{}
	for id, hs := range w.bySeries {
		byGroup[hs.gid] = append(byGroup[hs.gid], id)
	}
	gids := sortedKeys(byGroup)
	for _, ids := range byGroup {
		slices.Sort(ids)
	}

	dayStart := floorTo(w.start, int64(day))
	rolled := s.rolledUp(dayStart)
	rp, db, err := s.parts.create(tierRaw, w.start)
	if err != nil {
		return err
	}
	// Each series is unpacked into one scratch column, merged, encoded and
	// (for a rolled-up day) reduced to its hours at once, so that a window
	// is never held unpacked in full: the hours are all the second pass
	// needs.
	hour := int64(time.Hour)
	var hours map[uint32][]Bucket
	if rolled {
		hours = make(map[uint32][]Bucket, len(w.bySeries))
	}
	var scratch, oc column
	var fresh []Bucket
	err = rp.update(db, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBlocks)
		for _, gid := range gids {
			err := s.updateChunks(b, gid, w.start, byGroup[gid], func(id uint32, old [][]byte) ([][]byte, error) {
				w.bySeries[id].col.column(&scratch)
				scratch.normalize()
				upd := &scratch
				if old != nil {
					oc.reset()
					if err := decodeChunk(old, w.start, &oc); err != nil {
						return nil, fmt.Errorf("series %d: %w", id, err)
					}
					upd = mergeColumns(&oc, upd)
				}
				if rolled {
					fresh = appendBuckets(fresh[:0], upd, hour)
					hours[id] = slices.Clone(fresh)
				}
				return encodeChunk(upd, w.start), nil
			})
			if err != nil {
				return fmt.Errorf("group %d: %w", gid, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write window %s: %w", time.Unix(0, w.start).UTC().Format(time.RFC3339), err)
	}

	if !rolled {
		return nil
	}

	// Late points of a rolled-up day: the window's hours, recomputed from
	// the merged raw chunks, replace the window's part of the day's chunk.
	end := w.start + int64(s.opts.Window)
	hp, db, err := s.parts.create(tier1h, w.start)
	if err != nil {
		return err
	}
	err = hp.update(db, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBlocks)
		for _, gid := range gids {
			err := s.updateChunks(b, gid, dayStart, byGroup[gid], func(id uint32, old [][]byte) ([][]byte, error) {
				var bs []Bucket
				if old != nil {
					var err error
					if bs, err = decodeRollupChunk(old, dayStart, hour, nil); err != nil {
						return nil, fmt.Errorf("series %d: %w", id, err)
					}
				}
				bs = replaceBuckets(bs, hours[id], w.start, end)
				if len(bs) == 0 {
					return nil, nil
				}
				return encodeRollupChunk(bs, dayStart, hour), nil
			})
			if err != nil {
				return fmt.Errorf("group %d: %w", gid, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write 1h rollups of window %s: %w", time.Unix(0, w.start).UTC().Format(time.RFC3339), err)
	}
	return nil
}

// blockRef is one stored block of a group and window, as listed before
// anything is changed (bbolt's slices die with the first write).
type blockRef struct {
	first uint32
	key   []byte
	val   []byte // valid until the bucket is written to
}

// listBlocks returns the blocks of (gid, start) in b, by first id.
func listBlocks(b *bolt.Bucket, gid uint32, start int64) []blockRef {
	var out []blockRef
	prefix := blockKey(start, gid, 0)
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil; k, v = c.Next() {
		st, g, first, ok := parseBlockKey(k)
		if !ok || g != gid || st != start {
			break
		}
		out = append(out, blockRef{first: first, key: k, val: v})
	}
	return out
}

// blockFor returns the index of the block that holds id: the one with the
// greatest first id not above it; ids below every block go to the first.
func blockFor(blocks []blockRef, id uint32) int {
	i, found := slices.BinarySearchFunc(blocks, id, func(b blockRef, id uint32) int { return cmpInt(int64(b.first), int64(id)) })
	if found {
		return i
	}
	return max(i-1, 0)
}

// updateChunks rewrites the chunks of ids (ascending) in the blocks of
// (gid, start): fn gets each id's stored chunk (nil when there is none) and
// returns the new one (nil removes it). Only the blocks that hold one of the
// ids are rewritten, each on its own, so that blocks keep partitioning the
// id space.
func (s *Store) updateChunks(b *bolt.Bucket, gid uint32, start int64, ids []uint32, fn func(id uint32, old [][]byte) ([][]byte, error)) error {
	blocks := listBlocks(b, gid, start)
	type job struct {
		ref  *blockRef
		blk  *block
		news []uint32
	}
	var jobs []job
	if len(blocks) == 0 {
		jobs = append(jobs, job{news: ids})
	} else {
		// ids are sorted, so the jobs come out in block order.
		for _, id := range ids {
			i := blockFor(blocks, id)
			if len(jobs) == 0 || jobs[len(jobs)-1].ref != &blocks[i] {
				jobs = append(jobs, job{ref: &blocks[i]})
			}
			jobs[len(jobs)-1].news = append(jobs[len(jobs)-1].news, id)
		}
		// Decompress before the first write: bbolt's value slices point
		// into pages that a write may reuse.
		for i := range jobs {
			blk, err := s.codec.decodeBlock(jobs[i].ref.val)
			if err != nil {
				return fmt.Errorf("block %x: %w", jobs[i].ref.key, err)
			}
			jobs[i].blk = blk
			jobs[i].ref.key = slices.Clone(jobs[i].ref.key)
		}
	}
	// Keys start with the time, so a window's blocks are appended at the
	// end of the partition's key range: pages filled full waste nothing.
	b.FillPercent = 1
	for _, j := range jobs {
		var old []entry
		if j.blk != nil {
			old = j.blk.entries()
			s.m.lateRewrites.Inc()
		}
		out := make([]entry, 0, len(old)+len(j.news))
		oi := 0
		for _, id := range j.news {
			for oi < len(old) && old[oi].id < id {
				out = append(out, old[oi])
				oi++
			}
			var prev [][]byte
			if oi < len(old) && old[oi].id == id {
				prev = old[oi].streams
				oi++
			}
			streams, err := fn(id, prev)
			if err != nil {
				return err
			}
			if streams != nil {
				out = append(out, entry{id: id, streams: streams})
			}
		}
		out = append(out, old[oi:]...)
		if j.ref != nil {
			if err := b.Delete(j.ref.key); err != nil {
				return fmt.Errorf("delete block %x: %w", j.ref.key, err)
			}
		}
		err := s.codec.packBlocks(out, func(first uint32, data []byte) error {
			s.m.blocksWritten.Inc()
			s.m.blockBytes.Add(len(data))
			return b.Put(blockKey(start, gid, first), data)
		})
		if err != nil {
			return fmt.Errorf("put block: %w", err)
		}
	}
	return nil
}
