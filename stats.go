package deputy

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/deputyhq/deputy/internal/window"
)

// windowSize is how many recent samples the runtime percentiles cover.
const windowSize = 1000

// stats collects the runtime figures of a node.
type stats struct {
	drift        *window.Window // ms from scheduled to started
	claimTime    *window.Window // ms per claim cycle
	load         *window.Window // percent of the budget used after a poll
	mu           sync.Mutex
	durations    map[string]*window.Window   // ms per run, by type; guarded by mu
	results      map[string]map[string]int64 // type -> outcome -> count; guarded by mu
	pollResults  map[string]int64            // guarded by mu
	lastPoll     time.Time                   // guarded by mu
	claimed      int64                       // guarded by mu
	pollFailures int64                       // guarded by mu
}

func newStats() *stats {
	return &stats{
		drift:       window.New(windowSize),
		claimTime:   window.New(windowSize),
		load:        window.New(windowSize),
		durations:   map[string]*window.Window{},
		results:     map[string]map[string]int64{},
		pollResults: map[string]int64{},
	}
}

func (s *stats) started(t *Task, now time.Time) {
	s.drift.Add(float64(now.Sub(t.ScheduledAt).Milliseconds()))
}

func (s *stats) finished(t *Task, outcome string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.durations[t.Type]
	if w == nil {
		w = window.New(windowSize)
		s.durations[t.Type] = w
	}
	w.Add(float64(d.Milliseconds()))
	r := s.results[t.Type]
	if r == nil {
		r = map[string]int64{}
		s.results[t.Type] = r
	}
	r[outcome]++
}

func (s *stats) polled(claimed int, load float64, took time.Duration, result string) {
	s.load.Add(load * 100)
	if took > 0 {
		s.claimTime.Add(float64(took.Microseconds()) / 1000)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastPoll = time.Now()
	s.claimed += int64(claimed)
	s.pollResults[result]++
}

func (s *stats) pollFailed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pollFailures++
	s.pollResults["failed"]++
}

// Health is a node's health report, modelled on the reference's
// _health endpoint.
type Health struct {
	ID        string    `json:"id"`
	Timestamp time.Time `json:"timestamp"`
	// Status is OK, warn or error.
	Status string `json:"status"`
	// Reason explains a status other than OK.
	Reason string      `json:"reason,omitempty"`
	Stats  HealthStats `json:"stats"`
}

// HealthStats groups the sections of a [Health] report.
type HealthStats struct {
	Configuration HealthConfiguration `json:"configuration"`
	Runtime       HealthRuntime       `json:"runtime"`
	Workload      HealthWorkload      `json:"workload"`
}

// HealthConfiguration is the configuration section of a [Health] report.
type HealthConfiguration struct {
	PollInterval Duration `json:"poll_interval"`
	Capacity     struct {
		Config int `json:"config"`
		AsCost int `json:"as_cost"`
	} `json:"capacity"`
	MaxAttempts int      `json:"max_attempts"`
	Lease       Duration `json:"lease"`
	APIKeyType  string   `json:"api_key_type,omitempty"`
	KeyServices []string `json:"key_services,omitempty"`
}

// HealthRuntime is the runtime section of a [Health] report. Durations are
// in milliseconds.
type HealthRuntime struct {
	Drift             window.Summary                `json:"drift"`
	Load              window.Summary                `json:"load"`
	ClaimDuration     window.Summary                `json:"claim_duration"`
	DurationByType    map[string]window.Summary     `json:"duration_by_type"`
	ResultsByType     map[string]map[string]int64   `json:"results_by_type"`
	Running           int                           `json:"running"`
	Polling           HealthPolling                 `json:"polling"`
	ResultFrequencies map[string]map[string]float64 `json:"result_frequency_percent_as_number"`
}

// HealthPolling describes the claim loop in a [Health] report.
type HealthPolling struct {
	LastSuccessfulPoll *time.Time       `json:"last_successful_poll"`
	Claimed            int64            `json:"claimed"`
	Failures           int64            `json:"failures"`
	ResultFrequency    map[string]int64 `json:"result_counts"`
}

// HealthWorkload is the workload section of a [Health] report.
type HealthWorkload struct {
	Count    int            `json:"count"`
	ByType   []Count        `json:"task_types"`
	Overdue  int            `json:"overdue"`
	Nodes    []Node         `json:"nodes"`
	ByStatus map[Status]int `json:"by_status"`
	Error    string         `json:"error,omitempty"`
}

// Health reports the node's configuration, runtime figures and the
// store's workload.
func (m *Manager) Health(ctx context.Context) *Health {
	now := m.cfg.Now()
	h := &Health{ID: m.cfg.NodeID, Timestamp: now, Status: "OK"}
	c := &h.Stats.Configuration
	c.PollInterval = Duration(m.cfg.PollInterval)
	c.Capacity.Config = m.cfg.Capacity
	c.Capacity.AsCost = m.pool.budget
	c.MaxAttempts = m.cfg.MaxAttempts
	c.Lease = Duration(m.cfg.Lease)
	c.APIKeyType = m.cfg.APIKeyType
	for _, s := range m.cfg.KeyServices {
		c.KeyServices = append(c.KeyServices, s.Kind())
	}

	r := &h.Stats.Runtime
	r.Drift = m.stats.drift.Summary()
	r.Load = m.stats.load.Summary()
	r.ClaimDuration = m.stats.claimTime.Summary()
	r.Running = m.pool.running()
	m.stats.mu.Lock()
	r.DurationByType = map[string]window.Summary{}
	for t, w := range m.stats.durations {
		r.DurationByType[t] = w.Summary()
	}
	r.ResultsByType = map[string]map[string]int64{}
	r.ResultFrequencies = map[string]map[string]float64{}
	for t, res := range m.stats.results {
		r.ResultsByType[t] = maps.Clone(res)
		var total int64
		for _, n := range res {
			total += n
		}
		f := map[string]float64{}
		for o, n := range res {
			f[o] = float64(n) * 100 / float64(total)
		}
		r.ResultFrequencies[t] = f
	}
	if !m.stats.lastPoll.IsZero() {
		lp := m.stats.lastPoll
		r.Polling.LastSuccessfulPoll = &lp
	}
	r.Polling.Claimed = m.stats.claimed
	r.Polling.Failures = m.stats.pollFailures
	r.Polling.ResultFrequency = maps.Clone(m.stats.pollResults)
	m.stats.mu.Unlock()

	m.workload(ctx, h, now)
	m.mu.Lock()
	started, stopped := m.started, m.stopped
	m.mu.Unlock()
	switch {
	case h.Stats.Workload.Error != "":
		h.Status, h.Reason = "error", "store unavailable"
	case started && !stopped && (r.Polling.LastSuccessfulPoll == nil ||
		time.Since(*r.Polling.LastSuccessfulPoll) > 3*(m.cfg.PollInterval+time.Second)):
		h.Status, h.Reason = "error", "claim loop is not polling"
	case r.Load.P50 >= 100:
		h.Status, h.Reason = "warn", "node is running at capacity"
	}
	return h
}

func (m *Manager) workload(ctx context.Context, h *Health, now time.Time) {
	w := &h.Stats.Workload
	counts, err := m.store.Aggregate(ctx, Query{})
	if err != nil {
		w.Error = "aggregate tasks: " + ErrorMessage(err)
		return
	}
	w.ByType = counts
	w.ByStatus = map[Status]int{}
	for _, c := range counts {
		w.Count += c.Count
		w.ByStatus[c.Status] += c.Count
	}
	enabled := true
	due, err := m.store.Aggregate(ctx, Query{DueBefore: &now, Statuses: []Status{StatusIdle}, Enabled: &enabled})
	if err == nil {
		for _, c := range due {
			w.Overdue += c.Count
		}
	}
	w.Nodes, _ = m.store.Nodes(ctx)
}

// Metrics is a snapshot of a node's counters, for exporters such as
// Prometheus.
type Metrics struct {
	Claimed      int64
	PollFailures int64
	Running      int
	Load         float64
	// Results counts finished runs by type and outcome (success,
	// retry_scheduled, failed, interrupted).
	Results map[string]map[string]int64
	// Drift and ClaimDuration summarise recent samples in milliseconds.
	Drift         window.Summary
	ClaimDuration window.Summary
}

// Metrics returns a snapshot of the node's counters.
func (m *Manager) Metrics() Metrics {
	s := m.stats
	out := Metrics{Running: m.pool.running(), Load: m.pool.load(), Drift: s.drift.Summary(),
		ClaimDuration: s.claimTime.Summary()}
	s.mu.Lock()
	defer s.mu.Unlock()
	out.Claimed, out.PollFailures = s.claimed, s.pollFailures
	out.Results = map[string]map[string]int64{}
	for t, r := range s.results {
		out.Results[t] = maps.Clone(r)
	}
	return out
}
