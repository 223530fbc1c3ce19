// Package devtest runs the stand-ins for tests: a UIAM stand-in and an
// Elasticsearch stand-in that accepts its credentials, served over HTTP on
// a shared settable clock. Like the stand-ins, it is for tests only.
package devtest

import (
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/deputyhq/deputy/devserver/esdev"
	"github.com/deputyhq/deputy/devserver/uiamdev"
)

// SharedSecret is the UIAM shared secret of a [Stack].
const SharedSecret = "devtest-uiam-shared-secret"

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock set to a fixed instant.
func NewClock() *Clock {
	return &Clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock forward by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Stack is both stand-ins, with no users.
type Stack struct {
	Clock   *Clock
	ES      *esdev.Server
	ESURL   string
	UIAM    *uiamdev.Server
	UIAMURL string
}

// Start serves both stand-ins until the test ends. They log to logger,
// which may be nil.
func Start(tb testing.TB, logger *slog.Logger) *Stack {
	tb.Helper()
	s := &Stack{Clock: NewClock()}
	s.UIAM = uiamdev.New(uiamdev.Config{SharedSecret: SharedSecret, Now: s.Clock.Now,
		Logger: logger})
	uts := httptest.NewServer(s.UIAM)
	tb.Cleanup(uts.Close)
	s.UIAMURL = uts.URL

	s.ES = esdev.New(esdev.Config{Now: s.Clock.Now, UIAMURL: uts.URL,
		UIAMSharedSecret: SharedSecret, Logger: logger})
	ets := httptest.NewServer(s.ES)
	tb.Cleanup(ets.Close)
	s.ESURL = ets.URL
	return s
}
