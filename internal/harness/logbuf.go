package harness

import (
	"bytes"
	"strings"
	"sync"
)

// logBuffer collects a process's logs from many goroutines, bounded: past
// logBufferMax the older half is dropped.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

const logBufferMax = 4 << 20

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len()+len(p) > logBufferMax {
		keep := append([]byte(nil), l.b.Bytes()[l.b.Len()/2:]...)
		l.b.Reset()
		l.b.Write(keep)
	}
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
