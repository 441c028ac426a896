//go:build linux

package daemon

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestSameAddr(t *testing.T) {
	tcp := func(s string) net.Addr {
		a, err := net.ResolveTCPAddr("tcp", s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, tc := range []struct {
		want, got string
		same      bool
	}{
		{"127.0.0.1:8030", "127.0.0.1:8030", true},
		{"127.0.0.1:8030", "127.0.0.1:8040", false},
		{"0.0.0.0:8030", "127.0.0.1:8030", false},
		{"127.0.0.1:8030", "[::]:8030", false},
		{"0.0.0.0:8030", "[::]:8030", true}, // Go binds 0.0.0.0 dual-stack
		{":8030", "[::]:8030", true},
		{"[::1]:8030", "[::1]:8030", true},
		{"127.0.0.1:0", "127.0.0.1:41234", true}, // any port will do
		{"localhost:8030", "127.0.0.1:8030", true},
	} {
		if got := sameAddr(tc.want, tcp(tc.got)); got != tc.same {
			t.Errorf("sameAddr(%q, %s) = %v; want %v", tc.want, tc.got, got, tc.same)
		}
	}
}

// fakeNotifySocket stands in for systemd's notification socket.
func fakeNotifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

// TestListenStoresSocket: a fresh bind hands systemd a copy of the very
// socket it listens on, named "http".
func TestListenStoresSocket(t *testing.T) {
	notify := fakeNotifySocket(t)
	t.Setenv("LISTEN_FDS", "") // nothing passed: bind anew
	ln, err := listen("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	_ = notify.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf, oob := make([]byte, 256), make([]byte, syscall.CmsgSpace(4))
	n, oobn, _, _, err := notify.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	if msg := string(buf[:n]); msg != "FDSTORE=1\nFDNAME=http" {
		t.Errorf("notification %q", msg)
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages %v, %v", msgs, err)
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("fds %v, %v", fds, err)
	}
	stored := os.NewFile(uintptr(fds[0]), "stored")
	defer stored.Close()
	kept, err := net.FileListener(stored)
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	if kept.Addr().String() != ln.Addr().String() {
		t.Errorf("stored socket on %s; listening on %s", kept.Addr(), ln.Addr())
	}

	// Once the daemon closes its copy, the stored one still takes
	// connections: they wait for the next process instead of being refused.
	_ = ln.Close()
	c, err := net.Dial("tcp", kept.Addr().String())
	if err != nil {
		t.Fatalf("dial after the daemon closed its copy: %v", err)
	}
	_ = c.Close()
}

func TestNotifyFDsWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := notifyFDs("FDSTORE=1", []int{0}); err != nil {
		t.Fatal(err)
	}
}
