package deputy

import (
	"cmp"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"
)

// Defaults of [Config].
const (
	DefaultPollInterval       = 500 * time.Millisecond
	DefaultCapacity           = 10
	DefaultMaxAttempts        = 3
	DefaultLease              = 5 * time.Minute
	DefaultHeartbeatInterval  = 10 * time.Second
	DefaultNodeTTL            = 30 * time.Second
	DefaultInvalidateInterval = 5 * time.Minute
	DefaultRemovalDelay       = time.Hour
	DefaultUnusedKeyGrace     = 10 * time.Minute
)

// MaxCapacity bounds Config.Capacity: a million tasks at once is far past
// what one node can run, and the pool's arithmetic on its budget must not
// overflow.
const MaxCapacity = 1_000_000

// Cipher encrypts secrets at rest. The keyring package implements it with
// AES-256-GCM.
type Cipher interface {
	// Seal encrypts plaintext bound to aad.
	Seal(plaintext, aad []byte) ([]byte, error)
	// Open decrypts what Seal returned for the same aad.
	Open(ciphertext, aad []byte) ([]byte, error)
}

// Config configures a [Manager]. The zero value of every field means its
// default.
type Config struct {
	// NodeID identifies this node as the owner of the tasks it runs. It must
	// be unique among the nodes sharing a store and stable across restarts,
	// so that a restarted node can release the tasks it still owns. Defaults
	// to a random id, which forgoes that release.
	NodeID string

	// PollInterval is how often the node looks for due tasks when nothing
	// wakes it earlier. Defaults to 500ms; at least 10ms.
	PollInterval time.Duration

	// Capacity is how many normal-cost tasks the node runs at once; its
	// cost budget is twice that. Defaults to 10.
	//
	// While a backlog of runs much shorter than a claim keeps it busy, a
	// node claims ahead: it may hold up to eight budgets of tasks claimed
	// (status running in the store, their leases renewed) that wait for a
	// slot, so that the next batch is at hand as slots free. They still run
	// within the budget, and go back to the store, due at once, if runs turn
	// long and they wait for a slot over 100 ms.
	Capacity int

	// MaxAttempts bounds the attempts of one-off tasks whose definition sets
	// none. Defaults to 3.
	MaxAttempts int

	// Lease is how long a claim owns a task before another node may
	// reclaim it. Runs renew it every third of it while they last.
	//
	// A node cut off from the store lets go of its tasks before others
	// may take them: before a lease runs out unrenewed, or before NodeTTL
	// has passed since its last recorded heartbeat, whichever comes first,
	// by a tenth of that time and at most a second. Its runs are
	// cancelled then and its tasks waiting for a slot handed back; unless
	// another node claimed a task meanwhile, it is due again at once, its
	// attempt not counted. Defaults to 5m; at least 1s.
	Lease time.Duration

	// HeartbeatInterval is how often the node records that it is alive.
	// Defaults to 10s.
	HeartbeatInterval time.Duration

	// NodeTTL is how long a node may go without heartbeating before its
	// running tasks are released to others, whatever their leases; the
	// node cancels its runs before then (see Lease). Defaults to 30s; at
	// least twice HeartbeatInterval.
	NodeTTL time.Duration

	// KeyServices grant the API keys of tasks scheduled with a caller's
	// credentials, one key of each kind per task type and call. Empty means
	// tasks are scheduled without keys.
	KeyServices []KeyService

	// APIKeyType is the kind of key runs present, such as "es" or "uiam".
	// A task without a key of that kind runs with another kind, with a
	// warning. Defaults to the kind of the first key service.
	APIKeyType string

	// Cipher encrypts stored secrets. Scheduling with credentials fails
	// without one.
	Cipher Cipher

	// InvalidateInterval is how often queued keys are invalidated. Defaults
	// to 5m.
	InvalidateInterval time.Duration

	// RemovalDelay is how long a key stays queued before it is invalidated,
	// so that runs still holding it can finish. Defaults to 1h.
	RemovalDelay time.Duration

	// UnusedKeyGrace is how long a granted key may stay unused by any task
	// before it is queued; it catches grants whose write never landed
	// because of a crash. Defaults to 10m.
	UnusedKeyGrace time.Duration

	// CredentialHosts lists the hosts (host or host:port) a run's
	// [Request.Client] presents the user's key to. Empty means none.
	CredentialHosts []string

	// Logger receives the manager's logs. Defaults to discarding them.
	Logger *slog.Logger

	// Now returns the current time. Defaults to time.Now.
	Now func() time.Time

	// Rand draws the jitter of retry backoffs. Defaults to a random source.
	Rand *rand.Rand
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.Capacity = cmp.Or(c.Capacity, DefaultCapacity)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, DefaultMaxAttempts)
	c.Lease = cmp.Or(c.Lease, DefaultLease)
	c.HeartbeatInterval = cmp.Or(c.HeartbeatInterval, DefaultHeartbeatInterval)
	c.NodeTTL = cmp.Or(c.NodeTTL, DefaultNodeTTL)
	c.InvalidateInterval = cmp.Or(c.InvalidateInterval, DefaultInvalidateInterval)
	c.RemovalDelay = cmp.Or(c.RemovalDelay, DefaultRemovalDelay)
	c.UnusedKeyGrace = cmp.Or(c.UnusedKeyGrace, DefaultUnusedKeyGrace)
	if c.APIKeyType == "" && len(c.KeyServices) > 0 {
		c.APIKeyType = c.KeyServices[0].Kind()
	}
	if c.NodeID == "" {
		c.NodeID = "deputy-" + newID()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return c
}

// Validate reports the first setting of c that [New] would refuse: out of
// range, or at odds with another setting.
func (c Config) Validate() error {
	if err := c.withDefaults().validate(); err != nil {
		return fmt.Errorf("deputy: %w", err)
	}
	return nil
}

func (c Config) validate() error {
	switch {
	case c.PollInterval < 10*time.Millisecond:
		return fmt.Errorf("config: poll_interval %s is below 10ms", c.PollInterval)
	// TODO(deputy): a due task whose cost exceeds the budget (an extra-large
	// task on a node of capacity below 5, Kibana's minimum) stops the
	// node's claims at it for good, since a claim stops at the first task
	// that does not fit; such tasks should be skipped or refused.
	case c.Capacity < 1 || c.Capacity > MaxCapacity:
		return fmt.Errorf("config: capacity %d must be between 1 and %d", c.Capacity, MaxCapacity)
	case c.MaxAttempts < 1:
		return fmt.Errorf("config: max_attempts %d must be at least 1", c.MaxAttempts)
	case c.Lease < time.Second:
		return fmt.Errorf("config: lease %s is below 1s", c.Lease)
	case c.HeartbeatInterval < 10*time.Millisecond:
		return fmt.Errorf("config: heartbeat_interval %s is below 10ms", c.HeartbeatInterval)
	case c.NodeTTL < 2*c.HeartbeatInterval:
		// A node lets go of its tasks a margin before NodeTTL has passed
		// since its last recorded heartbeat. Twice the interval leaves time
		// for a heartbeat to fail and be retried before then.
		return fmt.Errorf("config: node_ttl %s must be at least twice heartbeat_interval %s",
			c.NodeTTL, c.HeartbeatInterval)
	case c.RemovalDelay < 0:
		return fmt.Errorf("config: invalidate_api_key_task.removal_delay must not be negative")
	case c.InvalidateInterval < time.Second || c.InvalidateInterval%time.Second != 0:
		return fmt.Errorf("config: invalidate_api_key_task.interval %s must be whole seconds", c.InvalidateInterval)
	}
	var kinds []string
	for _, s := range c.KeyServices {
		if slices.Contains(kinds, s.Kind()) {
			return fmt.Errorf("config: two key services of kind %q", s.Kind())
		}
		kinds = append(kinds, s.Kind())
	}
	if len(kinds) > 0 && !slices.Contains(kinds, c.APIKeyType) {
		return fmt.Errorf("config: api_key_type %q names no configured key service (have %v)", c.APIKeyType, kinds)
	}
	return nil
}
