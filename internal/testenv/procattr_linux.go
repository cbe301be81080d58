package testenv

import "syscall"

// procAttr takes the broker down with the test binary if that dies without
// running its cleanup.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
