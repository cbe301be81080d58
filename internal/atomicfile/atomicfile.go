// Package atomicfile replaces files so that a reader, a crash or a full
// disk leaves either the old file or the new one: never a mix, never a
// temporary file. It also knows the temporary files of every atomic writer
// in fleet2mqtt (this one and the others' own), and removes those a crash
// left behind (RemoveLeftovers).
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write replaces path with data: it writes a temporary file in the same
// directory with mode perm, syncs it, renames it over path and syncs the
// directory. On any failure the temporary file is removed and path is left
// as it was.
func Write(path string, data []byte, perm fs.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// The rename itself becomes durable with the directory; not every
	// platform can sync one, and the data is safe already.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// CheckDir makes sure dir exists and takes new files, the way Write
// needs it: it creates dir (mode 0700) when missing and writes, syncs and
// removes a small temporary file in it (named as Write names its own, so
// that a crash in between leaves what start-up cleans). A read-only or
// full file system, or a directory this user may not write, is an error
// that says so.
func CheckDir(dir string) (err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	probe, err := os.CreateTemp(dir, ".write-check.tmp-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the probe's random name says nothing
		}
		return fmt.Errorf("cannot create a file in %s: %w", dir, err)
	}
	defer os.Remove(probe.Name())
	if _, err := probe.Write([]byte("ok")); err != nil {
		probe.Close()
		return fmt.Errorf("cannot write a file in %s: %w", dir, err)
	}
	if err := probe.Sync(); err != nil {
		probe.Close()
		return fmt.Errorf("cannot write a file in %s: %w", dir, err)
	}
	return probe.Close()
}
