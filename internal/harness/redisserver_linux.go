package harness

import "syscall"

// dieWithParent makes the kernel kill the redis-server when the process
// that started it dies without its teardown (kill -9, a crash): a private
// Redis is never left running on its own.
func dieWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
