package process

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateFile is where one stage keeps its state between runs:
// <StateDir>/<type>-<name>.json. JSON rather than gob so that an operator
// can read what a deadband believes it last sent.
type stateFile struct {
	path string
}

func newStateFile(dir, typ, name string) *stateFile {
	if dir == "" {
		return nil
	}
	return &stateFile{path: filepath.Join(dir, typ+"-"+name+".json")}
}

// load decodes the file into v and reports whether there was one.
func (f *stateFile) load(v any) (bool, error) {
	data, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read state %q: %w", f.path, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("decode state %q: %w", f.path, err)
	}
	return true, nil
}

// remove deletes the file, durably: a power cut right after must not bring
// it back.
func (f *stateFile) remove() error {
	err := os.Remove(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove state %q: %w", f.path, err)
	}
	return syncDir(filepath.Dir(f.path))
}

// save writes v atomically: to a temporary file that is fsync'd and renamed
// over the old one, then the directory is fsync'd, so the file is always
// either the old state or the new one, never a torn mix.
func (f *stateFile) save(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode state %q: %w", f.path, err)
	}
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create state dir %q: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(f.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("create state %q: %w", f.path, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write state %q: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync state %q: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close state %q: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return fmt.Errorf("rename state %q: %w", f.path, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open state dir %q: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync state dir %q: %w", dir, err)
	}
	return nil
}
