//go:build unix

package tlsfiles

import (
	"os"
	"syscall"
)

// inode tells a file renamed into place from the one it replaced, even
// with the same size and modification time.
func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino) //nolint:unconvert // Ino is uint32 on some platforms
	}
	return 0
}
