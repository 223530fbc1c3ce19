package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/deputyhq/deputy"
)

// recorder collects durations once enabled.
type recorder struct {
	mu      sync.Mutex
	enabled bool      // guarded by mu
	samples []float64 // milliseconds; guarded by mu
}

func newRecorder() *recorder { return &recorder{} }

func (r *recorder) enable() {
	r.mu.Lock()
	r.enabled = true
	r.mu.Unlock()
}

// started records the time from t's RunAt to now.
func (r *recorder) started(t *deputy.Task, now time.Time) {
	r.add(now.Sub(t.RunAt))
}

func (r *recorder) add(d time.Duration) {
	r.mu.Lock()
	if r.enabled {
		r.samples = append(r.samples, float64(d.Nanoseconds())/1e6)
	}
	r.mu.Unlock()
}

// summary returns the percentiles of the samples, nil without any.
func (r *recorder) summary() *Latencies {
	r.mu.Lock()
	s := slices.Clone(r.samples)
	r.mu.Unlock()
	return summarize(s)
}

// recent describes the 95th percentile of the last thousand samples.
func (r *recorder) recent() string {
	r.mu.Lock()
	s := slices.Clone(r.samples[max(0, len(r.samples)-1000):])
	r.mu.Unlock()
	l := summarize(s)
	if l == nil {
		return "p95 -"
	}
	return fmt.Sprintf("p95 %.1fms", l.P95)
}

// callStats counts the calls of a store method, the items they carried
// and how long they took.
type callStats struct {
	times *recorder
	mu    sync.Mutex
	calls int64 // guarded by mu
	items int64 // guarded by mu
}

func newCallStats() *callStats {
	s := &callStats{times: newRecorder()}
	s.times.enable()
	return s
}

func (s *callStats) add(items int, d time.Duration) {
	s.mu.Lock()
	s.calls++
	s.items += int64(items)
	s.mu.Unlock()
	s.times.add(d)
}

// summary describes the calls made so far.
func (s *callStats) summary() *Calls {
	s.mu.Lock()
	c := &Calls{Calls: s.calls, Items: s.items}
	s.mu.Unlock()
	if c.Calls > 0 {
		c.ItemsPerCall = math.Round(float64(c.Items)/float64(c.Calls)*100) / 100
	}
	c.Ms = s.times.summary()
	return c
}

// summarize returns the percentiles of samples, which it sorts.
func summarize(samples []float64) *Latencies {
	if len(samples) == 0 {
		return nil
	}
	slices.Sort(samples)
	sum := 0.0
	for _, v := range samples {
		sum += v
	}
	return &Latencies{
		Count: len(samples),
		P50:   round3(percentile(samples, 0.50)),
		P95:   round3(percentile(samples, 0.95)),
		P99:   round3(percentile(samples, 0.99)),
		Max:   round3(samples[len(samples)-1]),
		Mean:  round3(sum / float64(len(samples))),
	}
}

// percentile returns the nearest-rank q-th percentile of sorted samples.
func percentile(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// perSec returns count per second over secs, or zero when no time passed:
// a figure must stay finite for its JSON.
func perSec(count int64, secs float64) float64 {
	if secs <= 0 {
		return 0
	}
	return float64(count) / secs
}

// progress writes a line of describe's every interval until the returned
// function is called.
func progress(cfg Config, describe func(elapsed time.Duration) string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		ticker := time.NewTicker(cfg.ProgressInterval)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				fmt.Fprintln(cfg.Progress, describe(time.Since(start)))
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

// procStatus returns a memory figure of /proc/self/status, such as VmHWM,
// in bytes.
func procStatus(field string) (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s: %w", field, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("%s not found in /proc/self/status", field)
}

// resetPeakRSS resets the process's peak resident memory (VmHWM) to its
// current one, and reports whether the kernel allowed it.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// freeOSMemory returns the memory the insertion freed to the system, so
// that the node's peak starts from what it holds.
func freeOSMemory() { debug.FreeOSMemory() }

// cpuTime returns the CPU time, user and system, the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
