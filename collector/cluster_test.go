package collector

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/citysense/citysense/internal/cli"
)

func TestReadyBitmap(t *testing.T) {
	ready := make([]bool, 20)
	for _, p := range []int{0, 3, 8, 19} {
		ready[p] = true
	}
	hm := bitmap(ready)
	if hm != "090108" {
		t.Fatalf("bitmap = %q, want 090108", hm)
	}
	for p := range 24 {
		want := p < 20 && ready[p]
		if got := bitSet(hm, p); got != want {
			t.Errorf("bitSet(%q, %d) = %v, want %v", hm, p, got, want)
		}
	}
	for _, bad := range []string{"", "0", "zz", "0g"} {
		if bitSet(bad, 0) {
			t.Errorf("bitSet(%q, 0) = true", bad)
		}
	}
}

// The partitions a disk holds survive a restart; entries that do not
// belong to this node, or to the partition count, are dropped.
func TestPartitionState(t *testing.T) {
	dir := t.TempDir()
	n := &node{name: "c2", parts: 4, log: cli.Discard(), stateFile: filepath.Join(dir, "partitions.json"),
		rebuilt: map[int]string{1: consumerPrefix("c2", 1) + "A", 3: consumerPrefix("c2", 3) + "B"}}
	n.saveState()
	m := &node{name: "c2", parts: 4, log: cli.Discard(), stateFile: n.stateFile, rebuilt: map[int]string{}}
	if err := m.loadState(); err != nil {
		t.Fatal(err)
	}
	if len(m.rebuilt) != 2 || m.rebuilt[1] != "store-c2-p1-A" || m.rebuilt[3] != "store-c2-p3-B" {
		t.Fatalf("loaded %v", m.rebuilt)
	}
	// Another node's consumer, a partition out of range, a changed count.
	os.WriteFile(n.stateFile, []byte(`{"partitions":4,"rebuilt":{"0":"store-c1-p0-X","9":"store-c2-p9-Y","2":"store-c2-p2-Z"}}`), 0o600)
	m.rebuilt = map[int]string{}
	m.loadState()
	if len(m.rebuilt) != 1 || m.rebuilt[2] != "store-c2-p2-Z" {
		t.Fatalf("loaded %v, want only partition 2", m.rebuilt)
	}
	os.WriteFile(n.stateFile, []byte(`{"partitions":8,"rebuilt":{"2":"store-c2-p2-Z"}}`), 0o600)
	m.rebuilt = map[int]string{}
	m.loadState()
	if len(m.rebuilt) != 0 {
		t.Fatalf("loaded %v after the partition count changed, want nothing", m.rebuilt)
	}
}
