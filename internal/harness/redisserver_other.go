//go:build !linux

package harness

import "syscall"

// dieWithParent does nothing where the kernel offers no parent-death
// signal: the teardown stops the redis-server.
func dieWithParent(*syscall.SysProcAttr) {}
