// Package window keeps running windows of recent samples and reports their
// percentiles, for health statistics.
package window

import (
	"slices"
	"sync"
)

// Window holds the most recent samples, up to its size. It is safe for
// concurrent use.
type Window struct {
	mu      sync.Mutex
	samples []float64 // ring buffer, guarded by mu
	next    int       // guarded by mu
	full    bool      // guarded by mu
}

// New returns a window of the given size. Size must be positive.
func New(size int) *Window {
	if size <= 0 {
		panic("window: size must be positive")
	}
	return &Window{samples: make([]float64, size)}
}

// Add records a sample, dropping the oldest when the window is full.
func (w *Window) Add(v float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.samples[w.next] = v
	w.next++
	if w.next == len(w.samples) {
		w.next, w.full = 0, true
	}
}

// Summary is the percentiles of a window's samples.
type Summary struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// Summary returns the percentiles of the samples in the window.
func (w *Window) Summary() Summary {
	w.mu.Lock()
	n := w.next
	if w.full {
		n = len(w.samples)
	}
	s := slices.Clone(w.samples[:n])
	w.mu.Unlock()

	if len(s) == 0 {
		return Summary{}
	}
	slices.Sort(s)
	at := func(p float64) float64 {
		i := int(p*float64(len(s))+0.5) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Summary{Count: len(s), P50: at(0.50), P90: at(0.90), P95: at(0.95), P99: at(0.99), Max: s[len(s)-1]}
}
