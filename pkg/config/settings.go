package config

// Setting is one key's effective value and the layer that set it.
type Setting struct {
	Key    string
	Value  string // secrets masked
	Source Source
}

// Settings lists every key with its effective value, in display order.
func (c *Config) Settings() []Setting {
	out := make([]Setting, len(keys))
	for i, k := range keys {
		out[i] = Setting{Key: k.name, Value: k.masked(k.field.get(c)), Source: c.sources[k.name]}
	}
	return out
}

// ChangedKeys lists the keys whose value differs between c and next, in
// display order; secrets are compared unmasked.
func (c *Config) ChangedKeys(next *Config) []string {
	var changed []string
	for _, k := range keys {
		if k.field.get(c) != k.field.get(next) {
			changed = append(changed, k.name)
		}
	}
	return changed
}
