package statemap

import (
	"fmt"
	"sync"
	"testing"
)

func TestMap_Get_BoundedAndShared(t *testing.T) {
	m := New(3, func() *int { return new(int) })
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				if v, ok := m.Get(fmt.Sprint("k", i)); ok && v == nil {
					t.Error("nil value")
				}
			}
		}()
	}
	wg.Wait()
	if m.Len() != 3 {
		t.Fatalf("len = %d, want 3", m.Len())
	}
	a, _ := m.Get("k0")
	b, _ := m.Get("k0")
	if a != b {
		t.Fatal("two values for one key")
	}
	if _, ok := m.Get("new"); ok {
		t.Fatal("a full map took a new key")
	}
	if _, ok := New(0, func() *int { return new(int) }).Get("x"); !ok {
		t.Fatal("unbounded map refused a key")
	}
}
