//go:build unix

package server

import "syscall"

// descriptorLimit is the soft limit on open files (RLIMIT_NOFILE).
func descriptorLimit() (int, bool) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<31 {
		return 0, false // unreadable or unlimited
	}
	return int(lim.Cur), true
}
