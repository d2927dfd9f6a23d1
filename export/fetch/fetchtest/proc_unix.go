//go:build unix

package fetchtest

import (
	"os"
	"syscall"
)

// sysProcAttr puts Azurite in its own process group, so stopping it stops every process it
// started. On Linux it is also killed if the test binary dies first.
func sysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	setPdeathsig(a)
	return a
}

// terminate asks the process group to exit.
func terminate(p *os.Process) { syscall.Kill(-p.Pid, syscall.SIGTERM) }

// kill ends the process group.
func kill(p *os.Process) { syscall.Kill(-p.Pid, syscall.SIGKILL) }
