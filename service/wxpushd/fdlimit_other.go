//go:build !linux

package wxpushd

import "errors"

// raiseFDLimit is done on Linux only; elsewhere the Go runtime's own raise
// at start stands and the connection bound is not lowered to fit.
func raiseFDLimit() (before, soft, hard uint64, err error) {
	return 0, 0, 0, errors.New("open file limit: not read on this system")
}
