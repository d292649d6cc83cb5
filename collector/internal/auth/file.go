package auth

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
)

// maxFileSize bounds agents.json and tokens.json; a million agents fit.
const maxFileSize = 256 << 20

// stamp identifies one version of a file: a rename gives a new inode, a
// rewrite in place a new size or modification time. The zero stamp is a
// missing file.
type stamp struct {
	fi os.FileInfo
}

func (s stamp) same(o stamp) bool {
	if s.fi == nil || o.fi == nil {
		return s.fi == nil && o.fi == nil
	}
	return os.SameFile(s.fi, o.fi) && s.fi.Size() == o.fi.Size() && s.fi.ModTime().Equal(o.fi.ModTime())
}

// statFile returns the stamp of path as it is now.
func statFile(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return stamp{}, nil
	}
	if err != nil {
		return stamp{}, err
	}
	return stamp{fi: fi}, nil
}

// readFile returns the content of path together with the stamp of exactly
// that content (taken from the open descriptor, so a rename between stat
// and read cannot pair old content with a new stamp). A missing file is
// empty content with the zero stamp.
func readFile(path string) ([]byte, stamp, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, stamp{}, nil
	}
	if err != nil {
		return nil, stamp{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, stamp{}, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, stamp{}, err
	}
	if len(data) > maxFileSize {
		return nil, stamp{}, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	return data, stamp{fi: fi}, nil
}

// WriteFileAtomic replaces path with data so that a reader (or a crash)
// sees either the old content or the new, never a mix: it writes a
// temporary file in the same directory, fsyncs it, renames it over path
// and fsyncs the directory so that the rename itself is durable.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// registry is a list of records kept in one JSON file shared between
// processes, with an index built from it. Readers get the current view
// without locking; writers and reloads hold mu, and writers also hold the
// file lock, so that the CLI and the collector never lose each other's
// changes.
type registry[R, I any] struct {
	path   string
	what   string // "agents" or "tokens", for messages
	decode func([]byte) ([]R, error)
	encode func([]R) ([]byte, error)
	index  func([]R) I
	cmp    func(a, b R) int // the order of the records in a view
	log    *slog.Logger

	mu      sync.Mutex
	stamp   stamp // of the content cur reflects
	badSeen stamp // of the last broken content logged, so it is logged once
	cur     atomic.Pointer[view[R, I]]
}

// view is one immutable state of a registry.
type view[R, I any] struct {
	items []R
	idx   I
}

func (r *registry[R, I]) view() *view[R, I] { return r.cur.Load() }

func (r *registry[R, I]) set(items []R, st stamp) {
	items = slices.Clone(items)
	slices.SortFunc(items, r.cmp)
	r.cur.Store(&view[R, I]{items: items, idx: r.index(items)})
	r.stamp = st
}

// load reads the file for the first time; a broken file is an error here,
// since there is no good state to keep.
func (r *registry[R, I]) load() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, st, err := readFile(r.path)
	if err != nil {
		return fmt.Errorf("read %s file %q: %w", r.what, r.path, err)
	}
	items, err := r.parse(data)
	if err != nil {
		return fmt.Errorf("parse %s file %q: %w", r.what, r.path, err)
	}
	r.set(items, st)
	return nil
}

func (r *registry[R, I]) parse(data []byte) ([]R, error) {
	if len(data) == 0 {
		return nil, nil
	}
	return r.decode(data)
}

// reload re-reads the file when its stamp changed and reports whether the
// view changed. A broken file keeps the last good view and is logged once
// per broken version.
func (r *registry[R, I]) reload() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := statFile(r.path)
	if err != nil {
		r.log.Error("cannot stat credentials file; keeping the last good state", "file", r.path, "err", err)
		return false
	}
	if st.same(r.stamp) || (r.badSeen.fi != nil && st.same(r.badSeen)) {
		return false
	}
	data, st, err := readFile(r.path)
	var items []R
	if err == nil {
		items, err = r.parse(data)
	}
	if err != nil {
		if !st.same(r.badSeen) {
			r.badSeen = st
			r.log.Error("credentials file is broken; keeping the last good state until it is fixed",
				"file", r.path, "err", err, "kept", len(r.view().items))
		}
		return false
	}
	r.badSeen = stamp{}
	if st.fi == nil && r.stamp.fi != nil {
		r.log.Warn("credentials file removed: nobody is enrolled any more", "file", r.path)
	}
	r.set(items, st)
	r.log.Info("credentials reloaded", "file", r.path, r.what, len(items))
	return true
}

// update applies fn to the file's current records under the file lock and
// writes the result atomically. fn must not keep or modify its argument
// in place; it returns the new list.
func (r *registry[R, I]) update(fn func([]R) ([]R, error)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(r.path), 0o750); err != nil {
		return fmt.Errorf("create directory for %s file %q: %w", r.what, r.path, err)
	}
	unlock, err := lockFile(r.path + ".lock")
	if err != nil {
		return fmt.Errorf("lock %s file %q: %w", r.what, r.path, err)
	}
	defer unlock()
	// Re-read under the lock: another process may have written since the
	// last reload, and its change must not be overwritten.
	data, st, err := readFile(r.path)
	if err != nil {
		return fmt.Errorf("read %s file %q: %w", r.what, r.path, err)
	}
	items, err := r.parse(data)
	if err != nil {
		return fmt.Errorf("parse %s file %q (fix or remove it first): %w", r.what, r.path, err)
	}
	if !st.same(r.stamp) {
		r.set(items, st)
	}
	next, err := fn(items)
	if err != nil {
		return err
	}
	out, err := r.encode(next)
	if err != nil {
		return fmt.Errorf("encode %s: %w", r.what, err)
	}
	if err := WriteFileAtomic(r.path, out, 0o600); err != nil {
		return fmt.Errorf("write %s file %q: %w", r.what, r.path, err)
	}
	st, err = statFile(r.path)
	if err != nil {
		return fmt.Errorf("stat %s file %q: %w", r.what, r.path, err)
	}
	r.set(next, st)
	return nil
}
