package redistest

import (
	"errors"
	"os"
)

// Signal sends sig to the server's process and returns at once, without
// waiting for it to act: SIGSTOP freezes the server (connections stay open,
// commands get no answer, like a Redis stuck on a slow disk or a paused
// VM) and SIGCONT lets it go on. Stop, Kill and Restart are for ending and
// restarting it. A server left stopped is still killed by t.Cleanup.
func (s *Server) Signal(sig os.Signal) error {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return errors.New("redistest: the server was never started")
	}
	return cmd.Process.Signal(sig)
}
