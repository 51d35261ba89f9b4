// Package deporder orders VMs by their depends lists. It is pure and tiny
// so that both the daemon and the control client can use it without
// loading configs.
package deporder

import "sort"

// StopWaves orders names for stopping: each wave holds VMs that can stop
// together, and every VM comes in an earlier wave than each VM it depends
// on (depends maps every VM to its depends list, so that dependants that
// are not being stopped still count). Waves are sorted by name; empty ones
// are left out. A cycle, which a loaded config never has, cannot make it
// loop.
func StopWaves(depends map[string][]string, names []string) [][]string {
	dependants := make(map[string][]string)
	for n, ds := range depends {
		for _, d := range ds {
			dependants[d] = append(dependants[d], n)
		}
	}
	depth := make(map[string]int)
	var visit func(n string, seen map[string]bool) int
	visit = func(n string, seen map[string]bool) int {
		if d, ok := depth[n]; ok {
			return d
		}
		if seen[n] {
			return 0
		}
		seen[n] = true
		d := 0
		for _, m := range dependants[n] {
			if x := visit(m, seen) + 1; x > d {
				d = x
			}
		}
		depth[n] = d
		return d
	}
	var waves [][]string
	for _, n := range names {
		d := visit(n, map[string]bool{})
		for len(waves) <= d {
			waves = append(waves, nil)
		}
		waves[d] = append(waves[d], n)
	}
	out := waves[:0]
	for _, w := range waves {
		if len(w) > 0 {
			sort.Strings(w)
			out = append(out, w)
		}
	}
	return out
}
