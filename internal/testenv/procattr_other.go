//go:build !linux

package testenv

import "syscall"

// procAttr has nothing to add outside Linux.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
