// Package gencheck tells whether a committed generated file is what its
// generator makes today. The generators' freshness tests use it so that a
// change to a generator or to its input that was not followed by
// go generate fails the test suite, and CI with it.
package gencheck

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// Compare reads the committed file at path and returns nil when it equals
// fresh, the generator's output, byte for byte. Otherwise the error names
// the file, the first line that differs and the command that regenerates
// it, for example "go generate ./telemetry/".
func Compare(path string, fresh []byte, command string) error {
	committed, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w; run %s to create it", err, command)
	}
	if bytes.Equal(committed, fresh) {
		return nil
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return fmt.Errorf("%s is stale, %s; run %s and commit the result", path, firstDifference(committed, fresh), command)
}

// firstDifference describes the first line where have and want differ.
func firstDifference(have, want []byte) string {
	h, w := lines(have), lines(want)
	for i := 0; ; i++ {
		switch {
		case i >= len(h):
			return fmt.Sprintf("line %d is missing: want %q", i+1, w[i])
		case i >= len(w):
			return fmt.Sprintf("line %d should not be there: have %q", i+1, h[i])
		case !bytes.Equal(h[i], w[i]):
			return fmt.Sprintf("line %d is %q, want %q", i+1, h[i], w[i])
		}
	}
}

// lines splits b after each newline; a final line without one is a line.
func lines(b []byte) [][]byte {
	l := bytes.SplitAfter(b, []byte("\n"))
	if len(l[len(l)-1]) == 0 {
		l = l[:len(l)-1]
	}
	return l
}
