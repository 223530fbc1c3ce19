package deputy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

func newID() string { return uuid.NewString() }

// Manager schedules tasks into a [Store] and, once started, claims and runs
// the due tasks of the types registered on it.
type Manager struct {
	store  Store
	cfg    Config
	log    *slog.Logger
	stats  *stats
	keys   map[string]KeyService // by kind
	wakeup chan struct{}         // buffered 1: a task may be due now

	mu      sync.Mutex
	defs    map[string]*Definition // guarded by mu; frozen after Start
	started bool                   // guarded by mu
	stopped bool                   // guarded by mu
	cancel  context.CancelCauseFunc
	loops   sync.WaitGroup // background loops

	stopPoll   chan struct{} // closed to end the claim loop
	pollExited chan struct{} // closed when the claim loop has ended
	pool       *pool

	// lastBeat is the time, by cfg.Now in Unix nanoseconds, of the last
	// heartbeat the store recorded, by the heartbeat loop or with a claim.
	lastBeat atomic.Int64
}

// New returns a manager over store. Register definitions, then Start it to
// run tasks; a manager that is never started only schedules.
func New(store Store, cfg Config) (*Manager, error) {
	if store == nil {
		return nil, errors.New("deputy: new manager: nil store")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("deputy: new manager: %w", err)
	}
	m := &Manager{
		store:  store,
		cfg:    cfg,
		log:    cfg.Logger.With(slog.String("component", "manager"), slog.String("node_id", cfg.NodeID)),
		stats:  newStats(),
		keys:   map[string]KeyService{},
		wakeup: make(chan struct{}, 1),
		defs:   map[string]*Definition{},

		stopPoll:   make(chan struct{}),
		pollExited: make(chan struct{}),
	}
	for _, s := range cfg.KeyServices {
		m.keys[s.Kind()] = s
	}
	m.pool = newPool(m)
	if len(cfg.KeyServices) > 0 {
		if err := m.Register(m.invalidateDefinition()); err != nil {
			return nil, err
		}
	}
	return m, nil
}

var typeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:\-/]{0,127}$`)

// Register adds task definitions. Types must be unique and registered
// before Start.
func (m *Manager) Register(defs ...Definition) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started {
		return errors.New("deputy: register: manager already started")
	}
	for _, d := range defs {
		switch {
		case !typeRE.MatchString(d.Type):
			return fmt.Errorf("deputy: register: invalid task type %q", d.Type)
		case m.defs[d.Type] != nil:
			return fmt.Errorf("deputy: register: task type %q already registered", d.Type)
		case d.Run == nil:
			return fmt.Errorf("deputy: register %s: Run is required", d.Type)
		case d.Timeout < 0 || d.MaxAttempts < 0 || d.MaxConcurrency < 0:
			return fmt.Errorf("deputy: register %s: negative timeout, max attempts or concurrency", d.Type)
		}
		if d.Cost != 0 {
			if _, ok := costNames[d.Cost]; !ok {
				return fmt.Errorf("deputy: register %s: unknown cost %d", d.Type, d.Cost)
			}
		}
		d.Timeout = max(d.Timeout, 0)
		if d.Timeout == 0 {
			d.Timeout = DefaultTimeout
		}
		if d.MaxAttempts == 0 {
			d.MaxAttempts = m.cfg.MaxAttempts
		}
		if d.Priority == 0 {
			d.Priority = PriorityNormal
		}
		if d.Cost == 0 {
			d.Cost = CostNormal
		}
		m.defs[d.Type] = &d
	}
	return nil
}

// Definition returns the definition registered for a task type.
func (m *Manager) Definition(taskType string) (Definition, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.defs[taskType]
	if !ok {
		return Definition{}, false
	}
	return *d, true
}

// Types returns the registered task types.
func (m *Manager) Types() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts := make([]string, 0, len(m.defs))
	for t := range m.defs {
		ts = append(ts, t)
	}
	return ts
}

func (m *Manager) def(taskType string) *Definition {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.defs[taskType]
}

// NodeID returns the id this node claims tasks under.
func (m *Manager) NodeID() string { return m.cfg.NodeID }

// Start releases the tasks this node still owns from a previous life, then
// starts claiming and running due tasks in the background. It returns an
// error when the store cannot be reached.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return errors.New("deputy: start: already started")
	}
	m.started = true
	m.mu.Unlock()

	// Release what a previous process of this node left running: those
	// runs died with it, so retry them now rather than after their leases.
	now := m.cfg.Now()
	n, err := m.store.ReleaseOwned(ctx, m.cfg.NodeID, now)
	if err != nil {
		return fmt.Errorf("deputy: start: release owned tasks: %w", err)
	}
	if n > 0 {
		m.log.Info("released tasks left running by a previous run of this node", slog.Int("count", n))
	}
	if err := m.store.Heartbeat(ctx, m.cfg.NodeID, now); err != nil {
		return fmt.Errorf("deputy: start: heartbeat: %w", err)
	}
	m.beat(now)
	if len(m.cfg.KeyServices) > 0 {
		if err := m.ensureInvalidateTask(ctx); err != nil {
			return fmt.Errorf("deputy: start: %w", err)
		}
	}

	runCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	m.cancel = cancel
	m.pool.start(runCtx)
	m.goLoop(func() {
		defer close(m.pollExited)
		m.pollLoop(runCtx)
	})
	m.goLoop(func() { m.heartbeatLoop(runCtx) })
	m.goLoop(func() { m.leaseLoop(runCtx) })
	if nt, ok := m.store.(Notifier); ok {
		m.goLoop(func() { m.notifyLoop(runCtx, nt.Wakeups()) })
	}
	m.log.Info("manager started", slog.Int("capacity", m.cfg.Capacity),
		slog.Duration("poll_interval", m.cfg.PollInterval), slog.Int("task_types", len(m.Types())))
	return nil
}

func (m *Manager) goLoop(f func()) {
	m.loops.Add(1)
	go func() {
		defer m.loops.Done()
		f()
	}()
}

// Stop shuts the manager down in phases: it stops claiming, lets running
// tasks finish until ctx is done, then cancels the rest with [ErrShutdown]
// and records their outcome (an interrupted run is due again at once and its
// attempt is not counted), and finally stops the background loops. Stop is
// idempotent and safe without Start; it does not close the store.
func (m *Manager) Stop(ctx context.Context) error {
	m.mu.Lock()
	if !m.started || m.stopped {
		m.stopped = true
		m.mu.Unlock()
		return nil
	}
	m.stopped = true
	m.mu.Unlock()

	// Stop claiming; a claim in flight completes and its tasks run.
	m.pool.stopClaiming()
	close(m.stopPoll)
	<-m.pollExited
	// Tasks a claim ahead left waiting for slots go back unrun.
	m.pool.handBack()

	drained := m.pool.wait(ctx)
	if !drained {
		m.log.Warn("stop deadline reached; cancelling running tasks", slog.Int("running", m.pool.running()))
		m.pool.cancelAll(ErrShutdown)
		// Runs get a short grace to observe the cancellation and return.
		grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		m.pool.wait(grace)
		cancel()
	}
	flushCtx, cancelFlush := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	m.pool.flush(flushCtx)
	cancelFlush()
	m.cancel(ErrShutdown)
	m.loops.Wait()
	m.pool.stop()

	// Whatever still runs ignored its cancellation: release it so that
	// another node, or this one after a restart, retries it.
	if m.pool.running() > 0 {
		if _, err := m.store.ReleaseOwned(context.WithoutCancel(ctx), m.cfg.NodeID, m.cfg.Now()); err != nil {
			return fmt.Errorf("deputy: stop: release owned tasks: %w", err)
		}
	}
	m.log.Info("manager stopped")
	return nil
}

// wake nudges the claim loop: a task may be due now.
func (m *Manager) wake() {
	select {
	case m.wakeup <- struct{}{}:
	default:
	}
}
