package osservice

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

// fakeHost builds a Host from a map of files and environment variables.
func fakeHost(goos string, euid int, exe string, files map[string]string, env map[string]string) Host {
	return Host{
		GOOS:       goos,
		Euid:       euid,
		Executable: exe,
		Getenv:     func(k string) string { return env[k] },
		ReadFile: func(name string) ([]byte, error) {
			if b, ok := files[name]; ok {
				return []byte(b), nil
			}
			return nil, fs.ErrNotExist
		},
		Exists: func(name string) bool { _, ok := files[name]; return ok },
	}
}

var systemdHost = map[string]string{"/run/systemd/system": ""}

func TestContainer(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		env   map[string]string
		want  string
	}{
		{"bare metal", map[string]string{"/proc/1/cgroup": "0::/init.scope\n"}, nil, ""},
		{"docker", map[string]string{"/.dockerenv": ""}, nil, "docker"},
		{"podman", map[string]string{"/run/.containerenv": ""}, nil, "podman"},
		{"kubernetes", nil, map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "kubernetes"},
		{"container variable", nil, map[string]string{"container": "lxc"}, "lxc"},
		{"nspawn", map[string]string{"/run/systemd/container": "systemd-nspawn\n"}, nil, "systemd-nspawn"},
		{"cgroup", map[string]string{"/proc/1/cgroup": "12:pids:/kubepods/besteffort/pod1\n"}, nil, "kubepods"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fakeHost("linux", 0, "/usr/bin/saga", tt.files, tt.env).Container(); got != tt.want {
				t.Errorf("Container() = %q, want %q", got, tt.want)
			}
		})
	}
	if got := fakeHost("darwin", 0, "/usr/local/bin/saga", map[string]string{"/.dockerenv": ""}, nil).Container(); got != "" {
		t.Errorf("macOS is never a container, got %q", got)
	}
}

func TestCheckInstall(t *testing.T) {
	with := func(extra map[string]string) map[string]string {
		files := map[string]string{"/run/systemd/system": ""}
		for k, v := range extra {
			files[k] = v
		}
		return files
	}
	tests := []struct {
		name   string
		host   Host
		user   bool
		want   error
		advice string
	}{
		{"root on a systemd server", fakeHost("linux", 0, "/usr/bin/saga", systemdHost, nil), false, nil, ""},
		{"docker", fakeHost("linux", 0, "/usr/bin/saga", map[string]string{"/.dockerenv": ""}, nil), false, ErrContainer, "`saga serve`"},
		{"docker, even --user", fakeHost("linux", 1000, "/usr/bin/saga", map[string]string{"/.dockerenv": ""}, nil), true, ErrContainer, "entrypoint"},
		{"booted container with systemd", fakeHost("linux", 0, "/usr/bin/saga", with(map[string]string{"/run/systemd/container": "systemd-nspawn"}), nil), false, nil, ""},
		{"no systemd", fakeHost("linux", 0, "/usr/bin/saga", nil, nil), false, ErrNoSystemd, "saga serve"},
		{"not root", fakeHost("linux", 1000, "/usr/bin/saga", systemdHost, nil), false, ErrNotRoot, "sudo saga service install"},
		{"not root, --user", fakeHost("linux", 1000, "/usr/bin/saga", systemdHost, nil), true, nil, ""},
		{"homebrew on macOS", fakeHost("darwin", 501, "/opt/homebrew/Cellar/saga/1.0.0/bin/saga", nil, nil), true, ErrHomebrew, "brew services start saga"},
		{"linuxbrew", fakeHost("linux", 0, "/home/linuxbrew/.linuxbrew/Cellar/saga/1.0.0/bin/saga", systemdHost, nil), false, ErrHomebrew, "brew services"},
		{"HOMEBREW_PREFIX", fakeHost("darwin", 0, "/usr/local/custom/bin/saga", nil, map[string]string{"HOMEBREW_PREFIX": "/usr/local/custom"}), false, ErrHomebrew, "brew"},
		{"binary in /root", fakeHost("linux", 0, "/root/go/bin/saga", systemdHost, nil), false, ErrHomeDir, "ProtectHome"},
		{"binary in /home, --user", fakeHost("linux", 1000, "/home/ann/bin/saga", systemdHost, nil), true, nil, ""},
		{"macOS daemon without root", fakeHost("darwin", 501, "/usr/local/bin/saga", nil, nil), false, ErrNotRoot, "--user"},
		{"windows", fakeHost("windows", -1, `C:\saga\saga.exe`, nil, nil), false, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.host.CheckInstall(tt.user)
			if !errors.Is(err, tt.want) {
				t.Fatalf("CheckInstall = %v, want %v", err, tt.want)
			}
			if err == nil {
				return
			}
			var refusal *RefusalError
			if !errors.As(err, &refusal) {
				t.Fatalf("%v is not a *RefusalError", err)
			}
			if !strings.Contains(err.Error(), tt.advice) || strings.Contains(err.Error(), "\n") {
				t.Errorf("refusal %q should be one line mentioning %q", err, tt.advice)
			}
		})
	}
}

func TestCI(t *testing.T) {
	for env, want := range map[string]bool{"CI=true": true, "CI=false": false, "GITHUB_ACTIONS=true": true, "JENKINS_URL=http://j": true, "": false} {
		name, value, _ := strings.Cut(env, "=")
		h := fakeHost("linux", 0, "/usr/bin/saga", nil, map[string]string{name: value})
		if got := h.CI(); got != want {
			t.Errorf("CI() with %q = %v, want %v", env, got, want)
		}
	}
}

func TestServiceManager(t *testing.T) {
	for _, tt := range []struct {
		host Host
		want string
	}{
		{fakeHost("linux", 0, "/usr/bin/saga", systemdHost, nil), "systemd"},
		{fakeHost("linux", 0, "/usr/bin/saga", nil, nil), ""},
		{fakeHost("darwin", 0, "/usr/local/bin/saga", map[string]string{"/bin/launchctl": ""}, nil), "launchd"},
		{fakeHost("windows", 0, `C:\saga.exe`, nil, nil), "windows"},
	} {
		if got := tt.host.ServiceManager(); got != tt.want {
			t.Errorf("%s: ServiceManager() = %q, want %q", tt.host.GOOS, got, tt.want)
		}
	}
}
