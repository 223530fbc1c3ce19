package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/deputyhq/deputy"
)

// load loads a configuration from a YAML document, an environment and
// flags, as serve does.
func load(t *testing.T, yaml string, environ map[string]string, flags ...string) (Config, error) {
	t.Helper()
	path := ""
	if yaml != "" {
		path = filepath.Join(t.TempDir(), "deputy.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatalf("write config: %v", err)
		}
	}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	addConfigFlags(fs)
	if err := fs.Parse(flags); err != nil {
		t.Fatalf("parse flags %v: %v", flags, err)
	}
	lookup := func(k string) (string, bool) {
		v, ok := environ[k]
		return v, ok
	}
	return loadConfig(path, lookup, fs)
}

func mustLoad(t *testing.T, yaml string, environ map[string]string, flags ...string) Config {
	t.Helper()
	c, err := load(t, yaml, environ, flags...)
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	return c
}

func TestConfig_Defaults(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, "", nil)
	if c.Listen != "127.0.0.1:7420" || c.Data != "./deputy-data" || c.Store.Driver != "sqlite" ||
		c.Store.Path != filepath.Join("deputy-data", "deputy.db") ||
		c.LogLevel != "info" || c.LogFormat != "text" || c.Examples {
		t.Fatalf("defaults = %+v", c)
	}
	mc := c.managerConfig(nil)
	if mc.PollInterval != 0 || mc.Capacity != 0 || mc.MaxAttempts != 0 {
		t.Fatalf("manager config %+v: zero values must leave the Manager's defaults", mc)
	}
}

func TestConfig_Precedence(t *testing.T) {
	t.Parallel()
	const file = `
poll_interval: 1s
capacity: 5
max_attempts: 7
listen: 127.0.0.1:1000
store:
  driver: sqlite
  path: /tmp/file.db
invalidate_api_key_task:
  interval: 1m
  removal_delay: 2h
credential_hosts: [es.example.com, other:9200]
`

	t.Run("OK_FileOnly", func(t *testing.T) {
		t.Parallel()
		c := mustLoad(t, file, nil)
		if time.Duration(c.PollInterval) != time.Second || c.Capacity != 5 || c.MaxAttempts != 7 ||
			c.Listen != "127.0.0.1:1000" || c.Store.Path != "/tmp/file.db" ||
			time.Duration(c.InvalidateAPIKeyTask.Interval) != time.Minute ||
			time.Duration(c.InvalidateAPIKeyTask.RemovalDelay) != 2*time.Hour ||
			strings.Join(c.CredentialHosts, " ") != "es.example.com other:9200" {
			t.Fatalf("config = %+v", c)
		}
	})

	t.Run("OK_EnvOverFile", func(t *testing.T) {
		t.Parallel()
		c := mustLoad(t, file, map[string]string{
			"DEPUTY_POLL_INTERVAL":                         "2s",
			"DEPUTY_CAPACITY":                              "6",
			"DEPUTY_INVALIDATE_API_KEY_TASK_REMOVAL_DELAY": "10s",
			"DEPUTY_STORE_PATH":                            "/tmp/env.db",
			"DEPUTY_CREDENTIAL_HOSTS":                      "a, b",
		})
		if time.Duration(c.PollInterval) != 2*time.Second || c.Capacity != 6 || c.MaxAttempts != 7 ||
			time.Duration(c.InvalidateAPIKeyTask.RemovalDelay) != 10*time.Second ||
			time.Duration(c.InvalidateAPIKeyTask.Interval) != time.Minute ||
			c.Store.Path != "/tmp/env.db" || strings.Join(c.CredentialHosts, " ") != "a b" {
			t.Fatalf("config = %+v", c)
		}
	})

	t.Run("OK_FlagsOverEnv", func(t *testing.T) {
		t.Parallel()
		c := mustLoad(t, file, map[string]string{"DEPUTY_POLL_INTERVAL": "2s", "DEPUTY_CAPACITY": "6"},
			"--poll-interval", "3s", "--invalidate-api-key-task-removal-delay", "5m", "--examples",
			"--store-path", "/tmp/flag.db")
		if time.Duration(c.PollInterval) != 3*time.Second || c.Capacity != 6 || !c.Examples ||
			time.Duration(c.InvalidateAPIKeyTask.RemovalDelay) != 5*time.Minute || c.Store.Path != "/tmp/flag.db" {
			t.Fatalf("config = %+v", c)
		}
	})

	t.Run("OK_UnsetFlagsKeepLowerSources", func(t *testing.T) {
		t.Parallel()
		c := mustLoad(t, file, nil, "--listen", "127.0.0.1:2000")
		if c.Listen != "127.0.0.1:2000" || time.Duration(c.PollInterval) != time.Second || c.Capacity != 5 {
			t.Fatalf("config = %+v", c)
		}
	})

	t.Run("OK_DataMovesTheDatabase", func(t *testing.T) {
		t.Parallel()
		c := mustLoad(t, "", nil, "--data", "/srv/deputy")
		if c.Store.Path != filepath.Join("/srv/deputy", "deputy.db") {
			t.Fatalf("store.path = %q", c.Store.Path)
		}
	})
}

func TestConfig_Store(t *testing.T) {
	t.Parallel()
	const pg = "postgres://u:p@localhost/deputy"

	t.Run("OK_DatabaseURL", func(t *testing.T) {
		t.Parallel()
		c := mustLoad(t, "", map[string]string{"DATABASE_URL": pg})
		if c.Store.Driver != "postgres" || c.Store.URL.Reveal() != pg {
			t.Fatalf("store = %+v", c.Store)
		}
	})

	t.Run("OK_DeputyStoreURLOverDatabaseURL", func(t *testing.T) {
		t.Parallel()
		c := mustLoad(t, "", map[string]string{"DATABASE_URL": "postgres://x", "DEPUTY_STORE_URL": pg})
		if c.Store.URL.Reveal() != pg {
			t.Fatalf("store.url = %q", c.Store.URL.Reveal())
		}
	})

	t.Run("OK_Flags", func(t *testing.T) {
		t.Parallel()
		c := mustLoad(t, "store: {driver: sqlite}", nil, "--store", "postgres", "--database-url", pg)
		if c.Store.Driver != "postgres" || c.Store.URL.Reveal() != pg {
			t.Fatalf("store = %+v", c.Store)
		}
	})

	t.Run("ErrPostgresWithoutURL", func(t *testing.T) {
		t.Parallel()
		_, err := load(t, "", map[string]string{"DEPUTY_STORE_DRIVER": "postgres"})
		if err == nil || !strings.Contains(err.Error(), "store.url") {
			t.Fatalf("err = %v, want store.url required", err)
		}
	})
}

func TestConfig_Durations(t *testing.T) {
	t.Parallel()
	forms := map[string]time.Duration{
		"500ms": 500 * time.Millisecond,
		"10s":   10 * time.Second,
		"5m":    5 * time.Minute,
		"1h":    time.Hour,
		"1d":    24 * time.Hour,
	}
	for form, want := range forms {
		t.Run(form, func(t *testing.T) {
			t.Parallel()
			sources := map[string]Config{
				"file": mustLoad(t, "lease: "+form+"\n", nil),
				"env":  mustLoad(t, "", map[string]string{"DEPUTY_LEASE": form}),
				"flag": mustLoad(t, "", nil, "--lease", form),
			}
			for src, c := range sources {
				if time.Duration(c.Lease) != want {
					t.Fatalf("%s: lease %s = %s, want %s", src, form, time.Duration(c.Lease), want)
				}
			}
		})
	}
}

func TestConfig_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		yaml    string
		environ map[string]string
		flags   []string
		want    string
	}{
		{name: "UnknownKey", yaml: "pol_interval: 1s\n", want: `unknown key "pol_interval"`},
		{name: "UnknownNestedKey", yaml: "store:\n  drvier: sqlite\n", want: `unknown key "store.drvier"`},
		{name: "SectionNotMapping", yaml: "store: sqlite\n", want: "store must be a mapping"},
		{name: "BadDurationFile", yaml: "poll_interval: fast\n", want: `poll_interval: invalid duration "fast"`},
		{name: "BareNumberDuration", yaml: "poll_interval: 500\n", want: "poll_interval: invalid duration"},
		{name: "BadIntFile", yaml: "capacity: many\n", want: `capacity: "many" is not an integer`},
		{name: "ListForScalar", yaml: "listen: [a, b]\n", want: "listen: want a single value"},
		{name: "MappingForScalar", yaml: "capacity: {a: 1}\n", want: "capacity: want a value"},
		{name: "BadYAML", yaml: "a: [\n", want: "config"},
		{
			name:    "BadDurationEnv",
			environ: map[string]string{"DEPUTY_INVALIDATE_API_KEY_TASK_REMOVAL_DELAY": "soon"},
			want:    "DEPUTY_INVALIDATE_API_KEY_TASK_REMOVAL_DELAY: invalidate_api_key_task.removal_delay",
		},
		{name: "BadDurationFlag", flags: []string{"--poll-interval", "0s"}, want: "--poll-interval: poll_interval"},
		{name: "BadBoolEnv", environ: map[string]string{"DEPUTY_EXAMPLES": "maybe"}, want: "examples"},
		{name: "BadDriver", flags: []string{"--store", "mysql"}, want: `store.driver: "mysql" must be one of`},
		{name: "BadLogLevel", yaml: "log_level: loud\n", want: "log_level"},
		{name: "BadListen", flags: []string{"--listen", "7420"}, want: "listen"},
		{name: "NegativeCapacity", yaml: "capacity: -1\n", want: "capacity: -1 must not be negative"},
		{name: "BadAPIKeyType", yaml: "api_key_type: jwt\n", want: "api_key_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := load(t, tt.yaml, tt.environ, tt.flags...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestConfig_SecretsHaveNoFlags(t *testing.T) {
	t.Parallel()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	addConfigFlags(fs)
	for _, name := range []string{"encryption-key", "elasticsearch-password", "elasticsearch-api-key",
		"uiam-shared-secret", "decryption-only-keys", "store-url"} {
		if fs.Lookup(name) != nil {
			t.Fatalf("secret key has a flag --%s", name)
		}
	}
	c := mustLoad(t, "encryption_key: k1\ndecryption_only_keys: [k2, k3]\n",
		map[string]string{"DEPUTY_ELASTICSEARCH_PASSWORD": "pw"})
	if c.EncryptionKey.Reveal() != "k1" || len(c.DecryptionOnlyKeys) != 2 ||
		c.Elasticsearch.Password.Reveal() != "pw" {
		t.Fatalf("secrets = %q %q %q",
			c.EncryptionKey.Reveal(), c.DecryptionOnlyKeys, c.Elasticsearch.Password.Reveal())
	}
}

func TestConfig_AllKeys(t *testing.T) {
	t.Parallel()
	want := []string{
		"listen", "data", "node_id", "poll_interval", "capacity", "max_attempts", "lease",
		"heartbeat_interval", "node_ttl", "store.driver", "store.url", "store.path", "api_key_type",
		"invalidate_api_key_task.interval", "invalidate_api_key_task.removal_delay", "encryption_key",
		"decryption_only_keys", "elasticsearch.url", "elasticsearch.username", "elasticsearch.password",
		"elasticsearch.api_key", "elasticsearch.ca", "uiam.url", "uiam.shared_secret", "admin_role",
		"credential_hosts", "log_level", "log_format", "examples",
	}
	var got []string
	for _, k := range configKeys {
		got = append(got, k.name)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("keys = %v\nwant %v", got, want)
	}
	for _, k := range configKeys {
		if !k.secret && keyHelp[k.name] == "" {
			t.Fatalf("key %s has a flag but no help", k.name)
		}
	}
}

func TestPersistentNodeID(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, err := persistentNodeID(dir)
	if err != nil {
		t.Fatalf("first: %v", err)
	}
	b, err := persistentNodeID(dir)
	if err != nil {
		t.Fatalf("second: %v", err)
	}
	if a != b || !strings.HasPrefix(a, "deputy-") {
		t.Fatalf("ids %q and %q, want one stable id", a, b)
	}
	other, err := persistentNodeID(t.TempDir())
	if err != nil || other == a {
		t.Fatalf("another data dir got %q, %v", other, err)
	}
}

// TestConfig_ExampleFile keeps deputy.example.yaml loadable and its values
// the defaults it claims.
func TestConfig_ExampleFile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("deputy.example.yaml")
	if err != nil {
		t.Fatalf("read example: %v", err)
	}
	c := mustLoad(t, string(b), nil)
	mc := c.managerConfig(nil)
	if c.Listen != defaultListen || c.Store.Driver != "sqlite" ||
		mc.PollInterval != deputy.DefaultPollInterval || mc.Capacity != deputy.DefaultCapacity ||
		mc.MaxAttempts != deputy.DefaultMaxAttempts || mc.Lease != deputy.DefaultLease ||
		mc.HeartbeatInterval != deputy.DefaultHeartbeatInterval || mc.NodeTTL != deputy.DefaultNodeTTL ||
		mc.InvalidateInterval != deputy.DefaultInvalidateInterval ||
		mc.RemovalDelay != deputy.DefaultRemovalDelay {
		t.Fatalf("example config %+v differs from the defaults", c)
	}
}
