//go:build unix && !linux

package fetchtest

import "syscall"

func setPdeathsig(*syscall.SysProcAttr) {}
