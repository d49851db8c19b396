package wxpushd

import "syscall"

// raiseFDLimit raises the soft RLIMIT_NOFILE to the hard limit, where the
// process may, and returns the limits before and after.
func raiseFDLimit() (before, soft, hard uint64, err error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, 0, 0, err
	}
	before = l.Cur
	if l.Cur < l.Max {
		raised := syscall.Rlimit{Cur: l.Max, Max: l.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			return before, l.Cur, l.Max, err
		}
		l = raised
	}
	return before, l.Cur, l.Max, nil
}
