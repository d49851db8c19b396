//go:build !race

package mockwx

// raceEnabled reports that the race detector is on.
const raceEnabled = false
