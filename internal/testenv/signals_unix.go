//go:build unix

package testenv

import (
	"os"
	"syscall"
)

// Signals for Stop (saves the database), Pause and Resume.
var sigTerm, sigStop, sigCont os.Signal = syscall.SIGTERM, syscall.SIGSTOP, syscall.SIGCONT
