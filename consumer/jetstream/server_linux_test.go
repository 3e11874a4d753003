package jetstream_test

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the server exit when the test process dies before
// its cleanup has stopped it (a killed or timed-out test binary).
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
