//go:build unix

package command

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockDir takes the exclusive lock of dir (the file .lock in it, made when
// missing) and returns the function that releases it. It blocks while
// another holder, in this or another process, has it: fleet2mqtt serve
// and `fleet2mqtt command` share the directory. The lock is an advisory
// flock on an open file of its own, so two holders in one process
// exclude each other too, and a process that dies releases it.
func lockDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	f, err := os.OpenFile(lockPath(dir), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() {
		// Closing the file releases the lock.
		f.Close()
	}, nil
}
