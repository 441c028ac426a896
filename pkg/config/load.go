package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/confmap"
	koanfenv "github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// FlagConfig names the flag that points at the configuration file.
const FlagConfig = "config"

// SystemFile is the configuration file of the system service.
const SystemFile = "/etc/saga/config.toml"

// Options tells Load where to look.
type Options struct {
	// Getenv reads the environment; nil means an empty one.
	Getenv func(string) string
	// Flags is a parsed flag set that BindFlags prepared; nil means none.
	Flags *pflag.FlagSet
	// System makes SystemFile the default file (see IsSystem).
	System bool
}

// IsSystem reports whether this process should read the system service's
// file by default: it runs as root. The packaged service runs as its own
// user and names its file with --config.
func IsSystem() bool { return os.Geteuid() == 0 }

// BindFlags adds --config and a flag for each key that has one (--host,
// --port, --data-dir, --redis-url, --log-level) to fs. They are strings, so
// a bad value is reported like any other layer's.
func BindFlags(fs *pflag.FlagSet) {
	fs.String(FlagConfig, "", "read the configuration from `FILE` (default $SAGA_CONFIG_DIR/config.toml, "+SystemFile+" as root, else ~/.saga/config.toml)")
	for _, k := range keys {
		if k.flag != "" {
			fs.String(k.flag, "", k.usage+" ("+k.name+")")
		}
	}
}

// FilePath returns the configuration file to read and whether it was named
// with --config (a named file must exist; a default one may be missing):
// --config, else $SAGA_CONFIG_DIR/config.toml, else SystemFile for the
// system service, else ~/.saga/config.toml. It is empty when no home
// directory is known.
func FilePath(opts Options) (path string, named bool) {
	getenv := opts.getenv()
	if opts.Flags != nil {
		if f := opts.Flags.Lookup(FlagConfig); f != nil && f.Changed {
			return f.Value.String(), true
		}
	}
	if dir := getenv("SAGA_CONFIG_DIR"); dir != "" {
		return filepath.Join(dir, "config.toml"), false
	}
	if opts.System {
		return SystemFile, false
	}
	if home := homeDir(getenv); home != "" {
		return filepath.Join(home, ".saga", "config.toml"), false
	}
	return "", false
}

func (o Options) getenv() func(string) string {
	if o.Getenv == nil {
		return func(string) string { return "" }
	}
	return o.Getenv
}

func homeDir(getenv func(string) string) string {
	if home := getenv("HOME"); home != "" {
		return home
	}
	return getenv("USERPROFILE") // Windows
}

// layer is one level's values and where each came from.
type layer struct {
	values  *koanf.Koanf
	sources map[string]Source
}

// Load reads every layer, checks that each key is known and each value
// valid, and returns the effective configuration. Any problem is one *Error
// or one line naming the file.
func Load(opts Options) (*Config, error) {
	path, named := FilePath(opts)
	defaults, err := defaultLayer()
	if err != nil {
		return nil, err
	}
	file, found, err := fileLayer(path, named)
	if err != nil {
		return nil, err
	}
	env, err := envLayer(opts.getenv())
	if err != nil {
		return nil, err
	}
	flags, err := flagLayer(opts.Flags)
	if err != nil {
		return nil, err
	}

	merged := koanf.New(".")
	sources := map[string]Source{}
	for _, l := range []layer{defaults, file, env, flags} { // lowest first
		if err := merged.Merge(l.values); err != nil {
			return nil, fmt.Errorf("config: merge: %w", err)
		}
		maps.Copy(sources, l.sources)
	}

	cfg := &Config{File: path, FileFound: found, sources: sources}
	for _, k := range keys {
		raw := merged.Get(k.name)
		value, err := k.fromEnv(raw, sources[k.name])
		if err == nil {
			err = k.field.set(cfg, value)
		}
		if err != nil {
			return nil, &Error{Key: k.name, Value: display(k, raw), Reason: err.Error(), Source: sources[k.name]}
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func defaultLayer() (layer, error) {
	def := Default()
	values := map[string]any{}
	sources := map[string]Source{}
	for _, k := range keys {
		values[k.name] = k.field.get(&def)
		sources[k.name] = Source{Layer: LayerDefault}
	}
	return load(confmap.Provider(values, "."), nil, sources)
}

// fileLayer reads the TOML file at path, if any; found reports whether it
// existed. Only a file named with --config must exist.
func fileLayer(path string, named bool) (l layer, found bool, err error) {
	empty := layer{values: koanf.New("."), sources: map[string]Source{}}
	if path == "" {
		return empty, false, nil
	}
	src := Source{Layer: LayerFile, Name: path}
	k := koanf.New(".")
	if err := k.Load(file.Provider(path), toml.Parser()); err != nil {
		if errors.Is(err, fs.ErrNotExist) && !named {
			return empty, false, nil
		}
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			err = pathErr.Err // the path is already in the message
		}
		msg := strings.TrimPrefix(err.Error(), "toml: ")
		var syntax interface{ Position() (row, column int) } // the TOML parser's DecodeError
		if errors.As(err, &syntax) {
			row, col := syntax.Position()
			msg = fmt.Sprintf("line %d column %d: %s", row, col, msg)
		}
		return layer{}, false, fmt.Errorf("config: file %s: %s", path, msg)
	}
	sources := map[string]Source{}
	for _, name := range k.Keys() {
		if m, ok := k.Get(name).(map[string]any); ok && len(m) == 0 && isSection(name) {
			continue // a table with every setting commented out
		}
		if _, ok := keyByName(name); !ok {
			reason := "is not a known key"
			if near := nearestKey(name); near != "" {
				reason += "; did you mean " + near + "?"
			}
			return layer{}, false, &Error{Key: name, Reason: reason, Source: src}
		}
		sources[name] = src
	}
	return layer{values: k, sources: sources}, true, nil
}

// envLayer reads each key's environment names; the SAGA_ name wins over a
// legacy one. An empty variable counts as unset, and so does one whose
// format says it does not set the key (a RUST_LOG for other programs). A
// value is read in its own format by Load, once its layer has won.
func envLayer(getenv func(string) string) (layer, error) {
	var environ []string
	keyOf := map[string]string{}
	sources := map[string]Source{}
	for _, k := range keys {
		for _, name := range k.envNames() {
			if v := getenv(name); v != "" && k.envSets(name, v) {
				environ = append(environ, name+"="+v)
				keyOf[name] = k.name
				sources[k.name] = Source{Layer: LayerEnv, Name: name}
				break
			}
		}
	}
	p := koanfenv.Provider(".", koanfenv.Opt{
		EnvironFunc:   func() []string { return environ },
		TransformFunc: func(name, v string) (string, any) { return keyOf[name], v },
	})
	return load(p, nil, sources)
}

// flagLayer reads the flags that were given on the command line.
func flagLayer(fs *pflag.FlagSet) (layer, error) {
	sources := map[string]Source{}
	if fs == nil {
		return layer{values: koanf.New("."), sources: sources}, nil
	}
	keyOf := map[string]string{}
	for _, k := range keys {
		if k.flag != "" {
			keyOf[k.flag] = k.name
		}
	}
	p := posflag.ProviderWithFlag(fs, ".", nil, func(f *pflag.Flag) (string, any) {
		name, ok := keyOf[f.Name]
		if !ok || !f.Changed {
			return "", nil
		}
		sources[name] = Source{Layer: LayerFlag, Name: f.Name}
		return name, f.Value.String()
	})
	return load(p, nil, sources)
}

func load(p koanf.Provider, parser koanf.Parser, sources map[string]Source) (layer, error) {
	k := koanf.New(".")
	if err := k.Load(p, parser); err != nil {
		return layer{}, fmt.Errorf("config: %w", err)
	}
	return layer{values: k, sources: sources}, nil
}

// isSection reports whether name is a TOML table that holds known keys.
func isSection(name string) bool {
	for _, k := range keys {
		if strings.HasPrefix(k.name, name+".") {
			return true
		}
	}
	return false
}

// nearestKey returns the known key within two edits of name (a typo), or "".
func nearestKey(name string) string {
	best, bestDist := "", 3
	for _, k := range keys {
		if d := editDistance(name, k.name); d < bestDist {
			best, bestDist = k.name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
