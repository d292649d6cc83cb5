package ring

import (
	"slices"
	"strings"
)

// Ownership is rendezvous (highest random weight) hashing: every node
// scores every partition, and a partition's owners are the r nodes with
// the highest scores. Adding or removing a node moves only the partitions
// that node gains or loses; the others keep their owners and their order.
// Every node computes the same answer from the same set of names, in any
// order, with no shared state.

// score is the weight of node for partition p: FNV-1a over the name, a
// separator, then the partition number's eight bytes, finalised with
// fmix64 so that names differing only in their last character (c1, c2, …)
// still spread.
func score(node string, p int) uint64 {
	h := fnvSep(fnvString(fnvOffset, node))
	v := uint64(p)
	for i := 0; i < 8; i++ {
		h ^= v & 0xff
		h *= fnvPrime
		v >>= 8
	}
	return fmix64(h)
}

type scored struct {
	node  string
	score uint64
}

// Owners returns the r nodes (r ≥ 1; fewer when there are fewer nodes) that
// own partition p among nodes, highest rendezvous score first. The answer is
// deterministic and independent of the order of nodes; duplicate names
// count once.
func Owners(p int, nodes []string, r int) []string {
	return owners(p, nodes, r, nil)
}

// owners is Owners with a scratch slice, so that Assign scores all
// partitions with one allocation.
func owners(p int, nodes []string, r int, buf []scored) []string {
	if r < 1 {
		r = 1
	}
	buf = buf[:0]
	for _, n := range nodes {
		buf = append(buf, scored{n, score(n, p)})
	}
	// Ties between distinct names are astronomically rare; breaking them
	// by name keeps the answer independent of the input order anyway.
	slices.SortFunc(buf, func(a, b scored) int {
		if a.score != b.score {
			if a.score > b.score {
				return -1
			}
			return 1
		}
		return strings.Compare(a.node, b.node)
	})
	out := make([]string, 0, min(r, len(buf)))
	for i, s := range buf {
		if len(out) == r {
			break
		}
		if i > 0 && s.node == buf[i-1].node {
			continue // a duplicate sorts next to its twin
		}
		out = append(out, s.node)
	}
	return out
}

// Assign maps each partition 0..n-1 to its owners, as Owners does.
func Assign(n int, nodes []string, r int) [][]string {
	out := make([][]string, n)
	buf := make([]scored, 0, len(nodes))
	for p := range out {
		out[p] = owners(p, nodes, r, buf)
	}
	return out
}

// Owned lists, ascending, the partitions among 0..n-1 that node owns.
func Owned(n int, nodes []string, r int, node string) []int {
	var out []int
	buf := make([]scored, 0, len(nodes))
	for p := 0; p < n; p++ {
		if slices.Contains(owners(p, nodes, r, buf), node) {
			out = append(out, p)
		}
	}
	return out
}
