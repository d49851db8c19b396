//go:build !linux

package rediscluster

import "syscall"

// dieWithParent does nothing where the kernel offers no parent-death
// signal: Close stops the nodes.
func dieWithParent(*syscall.SysProcAttr) {}
