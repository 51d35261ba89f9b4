//go:build race

package chaos

// raceEnabled: the tests run under the race detector, and so does the
// daemon they build.
const raceEnabled = true
