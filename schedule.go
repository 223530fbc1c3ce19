package deputy

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/teambition/rrule-go"
)

var durationRE = regexp.MustCompile(`^([0-9]+)(ms|s|m|h|d)$`)

// ParseDuration parses a duration written as a positive integer and a unit:
// ms, s, m, h or d (a day is 24 hours), such as "500ms", "30s" or "1d". Go
// duration strings such as "1m30s" are accepted too.
func ParseDuration(s string) (time.Duration, error) {
	m := durationRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("invalid duration %q: want a positive integer and a unit (ms, s, m, h, d)", s)
		}
		return d, nil
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid duration %q: want a positive integer and a unit (ms, s, m, h, d)", s)
	}
	unit := map[string]time.Duration{
		"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour,
	}[m[2]]
	if n > int64(1<<62)/int64(unit) {
		return 0, fmt.Errorf("invalid duration %q: too long", s)
	}
	return time.Duration(n) * unit, nil
}

// FormatDuration writes d in the shortest unit form [ParseDuration] reads.
func FormatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d%time.Millisecond == 0:
		return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	default:
		return d.String()
	}
}

// Duration is a [time.Duration] that reads and writes the unit form of
// [ParseDuration] in JSON and YAML.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(FormatDuration(time.Duration(d))), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Frequencies accepted in an [RRule].
const (
	Monthly = "MONTHLY"
	Weekly  = "WEEKLY"
	Daily   = "DAILY"
	Hourly  = "HOURLY"
)

// Schedule makes a task recurring. Exactly one of Interval and RRule is set.
type Schedule struct {
	// Interval runs the task every interval: a positive integer and a unit
	// of s, m, h or d, such as "30s" or "1d".
	Interval string `json:"interval,omitempty"`
	// RRule runs the task at the occurrences of a recurrence rule.
	RRule *RRule `json:"rrule,omitempty"`
}

// RRule is a recurrence rule in the subset of RFC 5545 that deputy accepts.
type RRule struct {
	// Freq is MONTHLY, WEEKLY, DAILY or HOURLY.
	Freq string `json:"freq"`
	// Interval is the number of Freq periods between occurrences. Zero means 1.
	Interval int `json:"interval,omitempty"`
	// TZID is the IANA time zone the rule is evaluated in. Required.
	TZID string `json:"tzid"`
	// ByHour, ByMinute limit occurrences to these hours and minutes.
	ByHour   []int `json:"byhour,omitempty"`
	ByMinute []int `json:"byminute,omitempty"`
	// ByWeekday limits occurrences to these days: MO, TU, WE, TH, FR, SA, SU,
	// optionally with an ordinal such as +1MO or -1FR for monthly rules.
	ByWeekday []string `json:"byweekday,omitempty"`
	// ByMonthDay limits occurrences to these days of the month (monthly
	// rules only); negative values count from the end of the month.
	ByMonthDay []int `json:"bymonthday,omitempty"`
	// DTStart anchors the rule. Zero means the time the task is scheduled.
	DTStart *time.Time `json:"dtstart,omitempty"`
}

// Validate reports whether s is a well-formed schedule.
func (s *Schedule) Validate() error {
	switch {
	case s.Interval != "" && s.RRule != nil:
		return Errorf(EINVALID, "schedule: interval and rrule are mutually exclusive")
	case s.Interval != "":
		_, err := s.interval()
		return err
	case s.RRule != nil:
		_, err := s.RRule.compile(time.Unix(0, 0))
		return err
	default:
		return Errorf(EINVALID, "schedule: one of interval or rrule is required")
	}
}

var intervalRE = regexp.MustCompile(`^[0-9]+(s|m|h|d)$`)

func (s *Schedule) interval() (time.Duration, error) {
	if !intervalRE.MatchString(s.Interval) {
		return 0, Errorf(EINVALID, "schedule: invalid interval %q: want a positive integer and "+
			"a unit of s, m, h or d, such as 30s or 5m", s.Interval)
	}
	d, err := ParseDuration(s.Interval)
	if err != nil {
		return 0, Errorf(EINVALID, "schedule: invalid interval %q: want a positive integer and "+
			"a unit of s, m, h or d, such as 30s or 5m", s.Interval)
	}
	return d, nil
}

// Equal reports whether s and o describe the same schedule.
func (s *Schedule) Equal(o *Schedule) bool {
	if s == nil || o == nil {
		return s == o
	}
	a, _ := json.Marshal(s)
	b, _ := json.Marshal(o)
	return string(a) == string(b)
}

// Next returns the next occurrence of s strictly after the occurrence base,
// and never before now. Interval schedules add the interval to base; rrule
// schedules take the first occurrence after base. Computing from the
// occurrence that ran, not from the wall clock, keeps exactly one run per
// occurrence even when nodes' clocks disagree by a few seconds.
func (s *Schedule) Next(base, now time.Time) (time.Time, error) {
	var next time.Time
	switch {
	case s.Interval != "":
		d, err := s.interval()
		if err != nil {
			return time.Time{}, err
		}
		next = base.Add(d)
		if next.Before(now) {
			// Missed occurrences are skipped, not replayed.
			skipped := now.Sub(next)/d + 1
			next = next.Add(skipped * d)
		}
	case s.RRule != nil:
		r, err := s.RRule.compile(base)
		if err != nil {
			return time.Time{}, err
		}
		after := base
		if now.After(after) {
			// Occurrences missed while nobody ran them are skipped.
			after = now.Add(-time.Millisecond)
		}
		next = r.After(after, false)
		if next.IsZero() {
			return time.Time{}, Errorf(EINVALID, "schedule: rrule has no occurrence after %s",
				after.Format(time.RFC3339))
		}
	default:
		return time.Time{}, Errorf(EINVALID, "schedule: one of interval or rrule is required")
	}
	return next.UTC(), nil
}

// First returns when a newly scheduled task with schedule s first runs: now
// for an interval, and the first occurrence at or after now for an rrule
// (anchored at its dtstart when set).
func (s *Schedule) First(now time.Time) (time.Time, error) {
	if s.RRule == nil {
		return now, nil
	}
	start := now
	if s.RRule.DTStart != nil {
		start = *s.RRule.DTStart
	}
	r, err := s.RRule.compile(start)
	if err != nil {
		return time.Time{}, err
	}
	next := r.After(now.Add(-time.Millisecond), true)
	if next.IsZero() {
		return time.Time{}, Errorf(EINVALID, "schedule: rrule has no occurrence after %s", now.Format(time.RFC3339))
	}
	return next.UTC(), nil
}

var weekdays = map[string]rrule.Weekday{
	"MO": rrule.MO, "TU": rrule.TU, "WE": rrule.WE, "TH": rrule.TH,
	"FR": rrule.FR, "SA": rrule.SA, "SU": rrule.SU,
}

var weekdayRE = regexp.MustCompile(`^([+-]?[0-9]{1,2})?(MO|TU|WE|TH|FR|SA|SU)$`)

// compile validates r and builds the rrule anchored at dtstart (or at
// r.DTStart when set).
func (r *RRule) compile(dtstart time.Time) (*rrule.RRule, error) {
	opt := rrule.ROption{Interval: r.Interval, Byhour: r.ByHour, Byminute: r.ByMinute}
	switch strings.ToUpper(r.Freq) {
	case Monthly:
		opt.Freq = rrule.MONTHLY
	case Weekly:
		opt.Freq = rrule.WEEKLY
	case Daily:
		opt.Freq = rrule.DAILY
	case Hourly:
		opt.Freq = rrule.HOURLY
	default:
		return nil, Errorf(EINVALID, "schedule: rrule freq %q must be one of MONTHLY, WEEKLY, DAILY, HOURLY", r.Freq)
	}
	if r.TZID == "" {
		return nil, Errorf(EINVALID, "schedule: rrule tzid is required")
	}
	loc, err := time.LoadLocation(r.TZID)
	if r.TZID == "Local" {
		// Local would make occurrences depend on each node's time zone.
		err = errors.New("local time zone")
	}
	if err != nil {
		return nil, Errorf(EINVALID, "schedule: rrule tzid %q is not a known time zone", r.TZID)
	}
	if r.Interval < 0 {
		return nil, Errorf(EINVALID, "schedule: rrule interval must be positive")
	}
	for _, h := range r.ByHour {
		if h < 0 || h > 23 {
			return nil, Errorf(EINVALID, "schedule: rrule byhour %d out of range 0-23", h)
		}
	}
	for _, m := range r.ByMinute {
		if m < 0 || m > 59 {
			return nil, Errorf(EINVALID, "schedule: rrule byminute %d out of range 0-59", m)
		}
	}
	if len(r.ByMonthDay) > 0 && opt.Freq != rrule.MONTHLY {
		return nil, Errorf(EINVALID, "schedule: rrule bymonthday is only allowed with freq MONTHLY")
	}
	for _, d := range r.ByMonthDay {
		if d == 0 || d < -31 || d > 31 {
			return nil, Errorf(EINVALID, "schedule: rrule bymonthday %d out of range", d)
		}
	}
	opt.Bymonthday = r.ByMonthDay
	for _, w := range r.ByWeekday {
		m := weekdayRE.FindStringSubmatch(strings.ToUpper(w))
		if m == nil {
			return nil, Errorf(EINVALID, "schedule: rrule byweekday %q is not a weekday such as MO or +1FR", w)
		}
		wd := weekdays[m[2]]
		if m[1] != "" {
			n, _ := strconv.Atoi(m[1])
			if n == 0 || n < -53 || n > 53 {
				return nil, Errorf(EINVALID, "schedule: rrule byweekday %q has an invalid ordinal", w)
			}
			wd = wd.Nth(n)
		}
		opt.Byweekday = append(opt.Byweekday, wd)
	}
	if r.DTStart != nil {
		dtstart = *r.DTStart
	} else if len(r.ByHour) > 0 || len(r.ByMinute) > 0 {
		// Occurrences at fixed hours or minutes fall on the whole minute,
		// not on the second the task happened to be scheduled.
		opt.Bysecond = []int{0}
	}
	// Anchor at whole seconds so occurrences are stable across nodes.
	opt.Dtstart = dtstart.In(loc).Truncate(time.Second)
	rr, err := rrule.NewRRule(opt)
	if err != nil {
		return nil, Errorf(EINVALID, "schedule: invalid rrule: %v", err)
	}
	return rr, nil
}
