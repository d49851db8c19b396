package rediscluster

import "syscall"

// dieWithParent makes the kernel kill a node when the process that
// started it dies without its teardown (kill -9, a crash): no node is
// left running on its own.
func dieWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
