package buffer

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The sequence file holds a high-water mark of batch sequence numbers: no
// batch has a number at or above it. It is raised, in steps of seqReserve,
// before a number at or above the old mark is handed out, so the file is
// rewritten rarely and a restart skips at most one step of numbers. It lets the numbers stay monotonic even
// when every segment is lost, which matters because the uplink uses them as
// the collector's deduplication id: a reused number would make the
// collector drop new data as a resend of old.
const (
	seqFileName = "seq"
	seqReserve  = 1 << 16
	seqMagic    = "citysense-buffer-seq 1 "
)

func readSeqFile(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s, ok := strings.CutPrefix(strings.TrimSpace(string(data)), seqMagic)
	if !ok {
		return 0, fmt.Errorf("read %q: not a sequence file", path)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read %q: %w", path, err)
	}
	return v, nil
}

// writeSeqFile replaces the file atomically: a crash leaves the old or the
// new content, never a torn one.
func writeSeqFile(path string, v uint64) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write %q: %w", tmp, err)
	}
	_, err = f.WriteString(seqMagic + strconv.FormatUint(v, 10) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	return nil
}

// syncDir makes a rename or a new file in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
