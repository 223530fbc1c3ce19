package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/deputyhq/deputy"
)

// Defaults of [Config] that the Manager does not already default.
const (
	defaultListen = "127.0.0.1:7420"
	defaultData   = "./deputy-data"
)

// Config is the daemon's configuration. Every field is read, from low to
// high precedence, from a YAML file under its yaml key, from the environment
// variable DEPUTY_<KEY> (nested keys joined by "_", upper case) and from the
// flag --<key> (nested keys and "_" written as "-"). Secrets have no flag, so
// that they never show in a process listing.
//
// Durations are written as a positive integer and a unit: 500ms, 10s, 5m, 1h
// or 1d. Lists are YAML sequences, or comma-separated in the environment and
// in flags. Zero values mean the Manager's defaults.
type Config struct {
	// Listen is the address of the HTTP API. Defaults to 127.0.0.1:7420.
	Listen string `yaml:"listen"`
	// Data is the directory of the SQLite database and the node id.
	// Defaults to ./deputy-data.
	Data string `yaml:"data"`
	// NodeID identifies the node. Defaults to an id generated once and kept
	// in <data>/node_id, so that a restarted node releases its tasks.
	NodeID string `yaml:"node_id"`

	PollInterval      deputy.Duration `yaml:"poll_interval"`
	Capacity          int             `yaml:"capacity"`
	MaxAttempts       int             `yaml:"max_attempts"`
	Lease             deputy.Duration `yaml:"lease"`
	HeartbeatInterval deputy.Duration `yaml:"heartbeat_interval"`
	NodeTTL           deputy.Duration `yaml:"node_ttl"`

	Store StoreConfig `yaml:"store"`

	// APIKeyType is the kind of key runs present: es or uiam.
	APIKeyType           string               `yaml:"api_key_type"`
	InvalidateAPIKeyTask InvalidateTaskConfig `yaml:"invalidate_api_key_task"`
	// EncryptionKey encrypts API keys at rest: 64 hex characters, base64 of
	// 32 bytes, or a random passphrase of at least 32 characters.
	EncryptionKey deputy.Secret `yaml:"encryption_key" secret:"true"`
	// DecryptionOnlyKeys are former encryption keys, still accepted to
	// decrypt.
	DecryptionOnlyKeys []deputy.Secret `yaml:"decryption_only_keys" secret:"true"`

	Elasticsearch ElasticsearchConfig `yaml:"elasticsearch"`
	UIAM          UIAMConfig          `yaml:"uiam"`

	// AdminRole names the role whose holders see and change every task.
	AdminRole string `yaml:"admin_role"`
	// CredentialHosts lists the hosts runs present user keys to. Defaults
	// to the host of elasticsearch.url.
	CredentialHosts []string `yaml:"credential_hosts"`

	// LogLevel is debug, info, warn or error. Defaults to info.
	LogLevel string `yaml:"log_level"`
	// LogFormat is text or json. Defaults to text.
	LogFormat string `yaml:"log_format"`
	// Examples schedules the example tasks on start.
	Examples bool `yaml:"examples"`
}

// StoreConfig selects the store.
type StoreConfig struct {
	// Driver is sqlite or postgres. Defaults to postgres when a URL is set,
	// else sqlite.
	Driver string `yaml:"driver"`
	// URL is the PostgreSQL connection string. Defaults to $DATABASE_URL.
	URL deputy.Secret `yaml:"url" secret:"true"`
	// Path is the SQLite file. Defaults to <data>/deputy.db.
	Path string `yaml:"path"`
}

// InvalidateTaskConfig configures the task that invalidates retired keys.
type InvalidateTaskConfig struct {
	Interval     deputy.Duration `yaml:"interval"`
	RemovalDelay deputy.Duration `yaml:"removal_delay"`
}

// ElasticsearchConfig configures the Elasticsearch key service, which also
// authenticates the callers of the API.
type ElasticsearchConfig struct {
	URL      string        `yaml:"url"`
	Username string        `yaml:"username"`
	Password deputy.Secret `yaml:"password" secret:"true"`
	APIKey   deputy.Secret `yaml:"api_key" secret:"true"`
	// CA is a file of PEM certificate authorities to trust.
	CA string `yaml:"ca"`
}

// UIAMConfig configures the UIAM key service.
type UIAMConfig struct {
	URL          string        `yaml:"url"`
	SharedSecret deputy.Secret `yaml:"shared_secret" secret:"true"`
}

// defaultConfig returns the configuration before any source is applied.
func defaultConfig() Config {
	return Config{Listen: defaultListen, Data: defaultData, LogLevel: "info", LogFormat: "text"}
}

// configKey is one settable key of [Config].
type configKey struct {
	name   string // dotted yaml path, such as "store.driver"
	index  []int  // reflect field index path
	secret bool
}

// env is the environment variable of the key.
func (k configKey) env() string {
	return "DEPUTY_" + strings.ToUpper(strings.ReplaceAll(k.name, ".", "_"))
}

// flag is the flag name of the key.
func (k configKey) flag() string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(k.name)
}

var durationType = reflect.TypeFor[deputy.Duration]()

// configKeys lists the leaf keys of [Config], in declaration order.
var configKeys = collectKeys(reflect.TypeFor[Config](), "", nil)

func collectKeys(t reflect.Type, prefix string, index []int) []configKey {
	var keys []configKey
	for i := range t.NumField() {
		f := t.Field(i)
		name := prefix + strings.Split(f.Tag.Get("yaml"), ",")[0]
		idx := append(slices.Clone(index), i)
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			keys = append(keys, collectKeys(f.Type, name+".", idx)...)
			continue
		}
		keys = append(keys, configKey{name: name, index: idx, secret: f.Tag.Get("secret") == "true"})
	}
	return keys
}

func lookupKey(name string) (configKey, bool) {
	for _, k := range configKeys {
		if k.name == name {
			return k, true
		}
	}
	return configKey{}, false
}

// set sets a key from its text form. Lists take comma-separated values.
func (c *Config) set(k configKey, value string) error {
	v := reflect.ValueOf(c).Elem().FieldByIndex(k.index)
	if v.Kind() == reflect.Slice {
		var items []string
		for item := range strings.SplitSeq(value, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		return c.setList(k, items)
	}
	if err := setScalar(v, value); err != nil {
		return fmt.Errorf("%s: %w", k.name, err)
	}
	return nil
}

// setList sets a list key.
func (c *Config) setList(k configKey, items []string) error {
	v := reflect.ValueOf(c).Elem().FieldByIndex(k.index)
	if v.Kind() != reflect.Slice {
		return fmt.Errorf("%s: want a single value, not a list", k.name)
	}
	list := reflect.MakeSlice(v.Type(), len(items), len(items))
	for i, item := range items {
		if err := setScalar(list.Index(i), item); err != nil {
			return fmt.Errorf("%s: %w", k.name, err)
		}
	}
	v.Set(list)
	return nil
}

func setScalar(v reflect.Value, s string) error {
	switch {
	case v.Type() == durationType:
		d, err := deputy.ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Int:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		v.SetInt(int64(n))
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		v.SetBool(b)
	default:
		panic("config: unsupported field type " + v.Type().String())
	}
	return nil
}

// loadFile applies a YAML file. Unknown keys and values of the wrong shape
// are errors that name the key.
func (c *Config) loadFile(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return err
	}
	if len(doc.Content) == 0 {
		return nil
	}
	return c.applyNode(doc.Content[0], "")
}

func (c *Config) applyNode(n *yaml.Node, prefix string) error {
	if n.Kind != yaml.MappingNode {
		what := cmp.Or(strings.TrimSuffix(prefix, "."), "the file")
		return fmt.Errorf("line %d: %s must be a mapping", n.Line, what)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		name, val := prefix+n.Content[i].Value, n.Content[i+1]
		if k, ok := lookupKey(name); ok {
			if err := c.applyLeaf(k, val); err != nil {
				return fmt.Errorf("line %d: %w", val.Line, err)
			}
			continue
		}
		if isSection(name) {
			if err := c.applyNode(val, name+"."); err != nil {
				return err
			}
			continue
		}
		return fmt.Errorf("line %d: unknown key %q", n.Content[i].Line, name)
	}
	return nil
}

func (c *Config) applyLeaf(k configKey, n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil
		}
		v := reflect.ValueOf(c).Elem().FieldByIndex(k.index)
		if v.Kind() == reflect.Slice {
			return c.set(k, n.Value)
		}
		if err := setScalar(v, n.Value); err != nil {
			return fmt.Errorf("%s: %w", k.name, err)
		}
		return nil
	case yaml.SequenceNode:
		items := make([]string, len(n.Content))
		for i, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				return fmt.Errorf("%s: list items must be plain values", k.name)
			}
			items[i] = item.Value
		}
		return c.setList(k, items)
	default:
		return fmt.Errorf("%s: want a value, not a mapping", k.name)
	}
}

// isSection reports whether name is the parent of some key.
func isSection(name string) bool {
	for _, k := range configKeys {
		if strings.HasPrefix(k.name, name+".") {
			return true
		}
	}
	return false
}

// loadEnv applies DEPUTY_<KEY> variables, and DATABASE_URL as a fallback
// for store.url.
func (c *Config) loadEnv(lookup func(string) (string, bool)) error {
	if v, ok := lookup("DATABASE_URL"); ok && v != "" {
		c.Store.URL = deputy.Secret(v)
	}
	for _, k := range configKeys {
		v, ok := lookup(k.env())
		if !ok {
			continue
		}
		if err := c.set(k, v); err != nil {
			return fmt.Errorf("environment %s: %w", k.env(), err)
		}
	}
	return nil
}

// keyHelp describes the keys in flag usage.
var keyHelp = map[string]string{
	"listen":                                "address of the HTTP API (default 127.0.0.1:7420)",
	"data":                                  "data directory: SQLite database and node id (default ./deputy-data)",
	"node_id":                               "node id (default: generated once, kept in <data>/node_id)",
	"poll_interval":                         "how often to look for due tasks (default 500ms)",
	"capacity":                              "normal-cost tasks run at once (default 10)",
	"max_attempts":                          "attempts of a one-off task before it is removed (default 3)",
	"lease":                                 "how long a claim owns a task, renewed while it runs (default 5m)",
	"heartbeat_interval":                    "how often the node records that it is alive (default 10s)",
	"node_ttl":                              "silence after which a node's tasks are released (default 30s; at least 2 x heartbeat_interval)",
	"store.driver":                          "store: sqlite or postgres (default postgres with a URL, else sqlite)",
	"store.path":                            "SQLite file (default <data>/deputy.db)",
	"api_key_type":                          "kind of API key runs present: es or uiam",
	"invalidate_api_key_task.interval":      "how often retired API keys are invalidated (default 5m)",
	"invalidate_api_key_task.removal_delay": "how long a retired API key waits before invalidation (default 1h)",
	"elasticsearch.url":                     "Elasticsearch URL; enables API keys and API authentication",
	"elasticsearch.username":                "deputy's Elasticsearch user (password in the file or environment)",
	"elasticsearch.ca":                      "file of PEM certificate authorities for Elasticsearch",
	"uiam.url":                              "UIAM URL; grants UIAM keys too (shared secret in the file or environment)",
	"admin_role":                            "role whose holders see and change every task of their space",
	"credential_hosts":                      "hosts runs present user keys to (default: the Elasticsearch host)",
	"log_level":                             "debug, info, warn or error (default info)",
	"log_format":                            "text or json (default text)",
	"examples":                              "schedule the example tasks on start",
}

// keyFlag is the flag of a key. It holds the text given; [Config.loadFlags]
// parses it, so that file, environment and flags share one parser and its
// error messages.
type keyFlag struct {
	typ, val string
}

func (f *keyFlag) String() string     { return f.val }
func (f *keyFlag) Set(s string) error { f.val = s; return nil }
func (f *keyFlag) Type() string       { return f.typ }

// flagType names the kind of value a key takes in flag usage.
func flagType(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return "duration"
	case v.Kind() == reflect.Int:
		return "int"
	case v.Kind() == reflect.Slice:
		return "list"
	default:
		return "string"
	}
}

// flagAliases are flags for keys besides their --<key> flag.
var flagAliases = map[string]string{"store": "store.driver", "database-url": "store.url"}

// addConfigFlags defines a flag for every key that is not a secret, plus
// the aliases. Flag values are applied by [Config.loadFlags], on top of the
// file and the environment.
func addConfigFlags(fs *pflag.FlagSet) {
	for _, k := range configKeys {
		if k.secret {
			continue
		}
		v := reflect.ValueOf(defaultConfig()).FieldByIndex(k.index)
		usage := fmt.Sprintf("%s; env %s", cmp.Or(keyHelp[k.name], k.name), k.env())
		if v.Kind() == reflect.Bool {
			fs.Bool(k.flag(), false, usage)
			continue
		}
		fs.Var(&keyFlag{typ: flagType(v)}, k.flag(), usage)
	}
	fs.Var(&keyFlag{typ: "string"}, "store", "alias of --store-driver: sqlite or postgres")
	fs.Var(&keyFlag{typ: "string"}, "database-url",
		"PostgreSQL URL, as store.url (prefer DATABASE_URL: flags are visible to other users)")
}

// loadFlags applies the flags that were set.
func (c *Config) loadFlags(fs *pflag.FlagSet) error {
	var err error
	fs.Visit(func(f *pflag.Flag) {
		if err != nil {
			return
		}
		name, ok := flagAliases[f.Name]
		if !ok {
			name = ""
			for _, k := range configKeys {
				if !k.secret && k.flag() == f.Name {
					name = k.name
				}
			}
		}
		if name == "" {
			return // not a config flag
		}
		k, _ := lookupKey(name)
		if e := c.set(k, f.Value.String()); e != nil {
			err = fmt.Errorf("flag --%s: %w", f.Name, e)
		}
	})
	return err
}

// loadConfig reads the configuration from its sources: defaults, the file
// at path (if any), the environment and the flags that were set.
func loadConfig(path string, lookup func(string) (string, bool), fs *pflag.FlagSet,
) (Config, error) {
	c := defaultConfig()
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		err = c.loadFile(f)
		f.Close()
		if err != nil {
			return c, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := c.loadEnv(lookup); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	if fs != nil {
		if err := c.loadFlags(fs); err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
	}
	c.fill()
	if err := c.validate(); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// fill sets the defaults that depend on other keys.
func (c *Config) fill() {
	if c.Store.Driver == "" {
		c.Store.Driver = "sqlite"
		if c.Store.URL != "" {
			c.Store.Driver = "postgres"
		}
	}
	if c.Store.Path == "" && c.Data != "" {
		c.Store.Path = filepath.Join(c.Data, "deputy.db")
	}
}

// validate checks the keys the Manager does not check itself, naming them.
func (c *Config) validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %q is not host:port", c.Listen)
	}
	if c.Data == "" {
		return errors.New("data: must not be empty")
	}
	checks := []struct {
		key, value string
		allowed    []string
	}{
		{"store.driver", c.Store.Driver, []string{"sqlite", "postgres"}},
		{"api_key_type", c.APIKeyType, []string{"", "es", "uiam"}},
		{"log_level", c.LogLevel, []string{"debug", "info", "warn", "error"}},
		{"log_format", c.LogFormat, []string{"text", "json"}},
	}
	for _, ch := range checks {
		if !slices.Contains(ch.allowed, ch.value) {
			named := slices.DeleteFunc(slices.Clone(ch.allowed), func(s string) bool { return s == "" })
			return fmt.Errorf("%s: %q must be one of %s", ch.key, ch.value, strings.Join(named, ", "))
		}
	}
	if c.Store.Driver == "postgres" && c.Store.URL == "" {
		return errors.New("store.url: required with driver postgres (or set DATABASE_URL)")
	}
	for _, n := range []struct {
		key string
		v   int
	}{{"capacity", c.Capacity}, {"max_attempts", c.MaxAttempts}} {
		if n.v < 0 {
			return fmt.Errorf("%s: %d must not be negative", n.key, n.v)
		}
	}
	if c.Elasticsearch.Password != "" && c.Elasticsearch.APIKey != "" {
		return errors.New("elasticsearch: set password or api_key, not both")
	}
	if c.APIKeyType == "uiam" && c.UIAM.URL == "" {
		return errors.New("api_key_type: uiam needs uiam.url")
	}
	return nil
}

// managerConfig returns the Manager's configuration, without key services.
func (c *Config) managerConfig(log *slog.Logger) deputy.Config {
	return deputy.Config{
		NodeID:             c.NodeID,
		PollInterval:       time.Duration(c.PollInterval),
		Capacity:           c.Capacity,
		MaxAttempts:        c.MaxAttempts,
		Lease:              time.Duration(c.Lease),
		HeartbeatInterval:  time.Duration(c.HeartbeatInterval),
		NodeTTL:            time.Duration(c.NodeTTL),
		APIKeyType:         c.APIKeyType,
		InvalidateInterval: time.Duration(c.InvalidateAPIKeyTask.Interval),
		RemovalDelay:       time.Duration(c.InvalidateAPIKeyTask.RemovalDelay),
		CredentialHosts:    c.CredentialHosts,
		Logger:             log,
	}
}

// newLogger returns the daemon's logger, writing to w.
func (c *Config) newLogger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel)) // validated
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
