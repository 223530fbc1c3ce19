package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/internal/window"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsHandler registers deputy's collector and the Go and process
// collectors with reg, keeping the ones it already holds, and serves reg.
func (s *Server) metricsHandler(reg *prometheus.Registry) http.Handler {
	for _, c := range []prometheus.Collector{
		newCollector(s.m),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok {
				// The descriptors are fixed: only a programmer can get them wrong.
				panic(fmt.Sprintf("httpapi: register metrics: %v", err))
			}
		}
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      promLogger{s.log},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// promLogger passes promhttp's errors to slog.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) {
	l.log.Error("serve metrics", slog.String("error", fmt.Sprint(v...)))
}

// quantiles are the quantile labels of the summary gauges; 1 is the maximum.
var quantiles = []string{"0.5", "0.9", "0.95", "0.99", "1"}

// collector exports [deputy.Manager.Metrics], read on every scrape.
type collector struct {
	m              *deputy.Manager
	claimed        *prometheus.Desc
	pollFailures   *prometheus.Desc
	running        *prometheus.Desc
	load           *prometheus.Desc
	runs           *prometheus.Desc
	drift          *prometheus.Desc
	driftSamples   *prometheus.Desc
	claimTime      *prometheus.Desc
	claimTimeCount *prometheus.Desc
}

func newCollector(m *deputy.Manager) *collector {
	return &collector{
		m: m,
		claimed: prometheus.NewDesc("deputy_claimed_tasks_total",
			"Tasks this node has claimed.", nil, nil),
		pollFailures: prometheus.NewDesc("deputy_poll_failures_total",
			"Claim cycles that failed.", nil, nil),
		running: prometheus.NewDesc("deputy_running_tasks",
			"Tasks running on this node.", nil, nil),
		load: prometheus.NewDesc("deputy_load_ratio",
			"Share of this node's cost budget in use, from 0 to 1.", nil, nil),
		runs: prometheus.NewDesc("deputy_task_runs_total",
			"Finished runs by task type and outcome "+
				"(success, retry_scheduled, failed, interrupted).",
			[]string{"task_type", "outcome"}, nil),
		drift: prometheus.NewDesc("deputy_task_drift_seconds",
			"Delay from a task's scheduled time to the start of its run, over recent runs.",
			[]string{"quantile"}, nil),
		driftSamples: prometheus.NewDesc("deputy_task_drift_samples",
			"Recent runs the drift quantiles cover.", nil, nil),
		claimTime: prometheus.NewDesc("deputy_claim_duration_seconds",
			"Duration of a claim cycle, over recent cycles.", []string{"quantile"}, nil),
		claimTimeCount: prometheus.NewDesc("deputy_claim_duration_samples",
			"Recent claim cycles the claim duration quantiles cover.", nil, nil),
	}
}

// Describe implements [prometheus.Collector].
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.claimed, c.pollFailures, c.running, c.load, c.runs,
		c.drift, c.driftSamples, c.claimTime, c.claimTimeCount} {
		ch <- d
	}
}

// Collect implements [prometheus.Collector].
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	mt := c.m.Metrics()
	ch <- prometheus.MustNewConstMetric(c.claimed, prometheus.CounterValue, float64(mt.Claimed))
	ch <- prometheus.MustNewConstMetric(c.pollFailures, prometheus.CounterValue,
		float64(mt.PollFailures))
	ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, float64(mt.Running))
	ch <- prometheus.MustNewConstMetric(c.load, prometheus.GaugeValue, mt.Load)

	types := make([]string, 0, len(mt.Results))
	for t := range mt.Results {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		for outcome, n := range mt.Results[t] {
			ch <- prometheus.MustNewConstMetric(c.runs, prometheus.CounterValue, float64(n),
				t, outcome)
		}
	}

	quantileGauges(ch, c.drift, c.driftSamples, mt.Drift)
	quantileGauges(ch, c.claimTime, c.claimTimeCount, mt.ClaimDuration)
}

// quantileGauges sends the quantiles of a window summary, in milliseconds,
// as gauges in seconds. An empty window sends only its sample count.
func quantileGauges(ch chan<- prometheus.Metric, q, count *prometheus.Desc, s window.Summary) {
	ch <- prometheus.MustNewConstMetric(count, prometheus.GaugeValue, float64(s.Count))
	if s.Count == 0 {
		return
	}
	for i, v := range []float64{s.P50, s.P90, s.P95, s.P99, s.Max} {
		ch <- prometheus.MustNewConstMetric(q, prometheus.GaugeValue, v/1000, quantiles[i])
	}
}
