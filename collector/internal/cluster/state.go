package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateFile is the JSON kept in Config.StateFile: the other members that
// were live at the last change, so that a restart finds the cluster
// without a seed.
type stateFile struct {
	Members []stateMember `json:"members"`
}

type stateMember struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
}

// readState returns the addresses in the state file; a missing file is
// no addresses and no error.
func readState(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read cluster state %q: %w", path, err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decode cluster state %q: %w", path, err)
	}
	addrs := make([]string, 0, len(st.Members))
	for _, m := range st.Members {
		if m.Addr != "" {
			addrs = append(addrs, m.Addr)
		}
	}
	return addrs, nil
}

// writeState replaces the state file atomically: a temporary file in the
// same directory, synced, then renamed over the old one, so a crash leaves
// either the old list or the new one.
func writeState(path string, members []stateMember) error {
	b, err := json.MarshalIndent(stateFile{Members: members}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode cluster state: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write cluster state %q: %w", path, err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write cluster state %q: %w", path, err)
	}
	return nil
}
