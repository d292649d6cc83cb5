package main

import (
	"fmt"
	"slices"
	"testing"
	"time"
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

func TestQuantile(t *testing.T) {
	var d []time.Duration
	for i := range 31 {
		d = append(d, time.Duration(i+1)*time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0, time.Millisecond}, {0.25, 9 * time.Millisecond}, {0.5, 16 * time.Millisecond}, {1, 31 * time.Millisecond}} {
		if got := quantile(d, c.q); got != c.want {
			t.Errorf("quantile(1..31 ms, %v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := quantile(d[:2], 0.5); got != 2*time.Millisecond {
		t.Errorf("median of two = %v, want the upper, as len/2 picks", got)
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("quantile(nil) = %v", got)
	}
}
