package main

import (
	"fmt"
	"slices"
	"testing"
)

// TestPermutations: every order of n systems once, and within them each
// system directly after each other one equally often.
func TestPermutations(t *testing.T) {
	for n, want := range []int{1, 1, 2, 6, 24} {
		ps := permutations(n)
		if len(ps) != want {
			t.Fatalf("n=%d: %d orders, want %d", n, len(ps), want)
		}
		seen := map[string]bool{}
		after := map[[2]int]int{}
		for _, p := range ps {
			sorted := slices.Sorted(slices.Values(p))
			for i, v := range sorted {
				if v != i {
					t.Fatalf("n=%d: %v is not an order of 0..%d", n, p, n-1)
				}
			}
			seen[fmt.Sprint(p)] = true
			for i := 1; i < len(p); i++ {
				after[[2]int{p[i-1], p[i]}]++
			}
		}
		if len(seen) != want {
			t.Fatalf("n=%d: %d distinct orders, want %d", n, len(seen), want)
		}
		for pair, k := range after {
			if k != after[[2]int{0, 1}] {
				t.Fatalf("n=%d: %v follows %d times, 0→1 %d times", n, pair, k, after[[2]int{0, 1}])
			}
		}
	}
}
