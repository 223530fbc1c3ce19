package deputy

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"500ms", 500 * time.Millisecond},
		{"10s", 10 * time.Second},
		{"5m", 5 * time.Minute},
		{"1h", time.Hour},
		{"1d", 24 * time.Hour},
		{"1m30s", 90 * time.Second},
	} {
		got, err := ParseDuration(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "0s", "-1s", "1y", "abc", "1.5d", "99999999999999999999d"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) succeeded; want an error", bad)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	durations := []time.Duration{500 * time.Millisecond, 10 * time.Second, 5 * time.Minute, time.Hour, 48 * time.Hour}
	for _, d := range durations {
		got, err := ParseDuration(FormatDuration(d))
		if err != nil || got != d {
			t.Errorf("round trip of %v = %v, %v", d, got, err)
		}
	}
}

func TestSchedule_Validate(t *testing.T) {
	t.Parallel()
	valid := []Schedule{
		{Interval: "1s"}, {Interval: "30s"}, {Interval: "5m"}, {Interval: "1d"},
		{RRule: &RRule{Freq: "DAILY", TZID: "UTC", ByHour: []int{9}, ByMinute: []int{30}}},
		{RRule: &RRule{Freq: "WEEKLY", Interval: 2, TZID: "Europe/Paris", ByWeekday: []string{"MO", "FR"}}},
		{RRule: &RRule{Freq: "MONTHLY", TZID: "UTC", ByMonthDay: []int{1, -1}}},
		{RRule: &RRule{Freq: "MONTHLY", TZID: "UTC", ByWeekday: []string{"+1MO"}}},
		{RRule: &RRule{Freq: "HOURLY", TZID: "UTC", ByMinute: []int{0}}},
	}
	for _, s := range valid {
		if err := s.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v; want nil", s, err)
		}
	}
	invalid := map[string]Schedule{
		"empty":              {},
		"both":               {Interval: "1m", RRule: &RRule{Freq: "DAILY", TZID: "UTC"}},
		"interval unit":      {Interval: "5x"},
		"interval ms":        {Interval: "500ms"},
		"interval zero":      {Interval: "0s"},
		"no tzid":            {RRule: &RRule{Freq: "DAILY"}},
		"bad tzid":           {RRule: &RRule{Freq: "DAILY", TZID: "Mars/Olympus"}},
		"bad freq":           {RRule: &RRule{Freq: "YEARLY", TZID: "UTC"}},
		"byhour range":       {RRule: &RRule{Freq: "DAILY", TZID: "UTC", ByHour: []int{24}}},
		"byminute range":     {RRule: &RRule{Freq: "DAILY", TZID: "UTC", ByMinute: []int{60}}},
		"bymonthday weekly":  {RRule: &RRule{Freq: "WEEKLY", TZID: "UTC", ByMonthDay: []int{1}}},
		"bad weekday":        {RRule: &RRule{Freq: "WEEKLY", TZID: "UTC", ByWeekday: []string{"XX"}}},
		"negative interval":  {RRule: &RRule{Freq: "DAILY", TZID: "UTC", Interval: -1}},
		"bymonthday zero":    {RRule: &RRule{Freq: "MONTHLY", TZID: "UTC", ByMonthDay: []int{0}}},
		"weekday ordinal 99": {RRule: &RRule{Freq: "MONTHLY", TZID: "UTC", ByWeekday: []string{"+99MO"}}},
	}
	for name, s := range invalid {
		err := s.Validate()
		if ErrorCode(err) != EINVALID {
			t.Errorf("%s: Validate = %v; want an invalid error", name, err)
		}
	}
}

var base = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

func TestSchedule_Next(t *testing.T) {
	t.Parallel()
	t.Run("IntervalFromOccurrence", func(t *testing.T) {
		t.Parallel()
		s := &Schedule{Interval: "1m"}
		// The run started 2s late; the next run keeps the cadence.
		got, err := s.Next(base, base.Add(2*time.Second))
		if err != nil || !got.Equal(base.Add(time.Minute)) {
			t.Fatalf("Next = %v, %v; want %v", got, err, base.Add(time.Minute))
		}
	})
	t.Run("IntervalSkipsMissed", func(t *testing.T) {
		t.Parallel()
		s := &Schedule{Interval: "1m"}
		got, err := s.Next(base, base.Add(150*time.Second))
		if err != nil || !got.Equal(base.Add(3*time.Minute)) {
			t.Fatalf("Next = %v, %v; want %v", got, err, base.Add(3*time.Minute))
		}
	})
	t.Run("RRuleClockAhead", func(t *testing.T) {
		t.Parallel()
		// A node whose clock runs 5s ahead finishes the 10:00 occurrence at
		// what it thinks is 09:59:57: the next run must still be 11:00,
		// not 10:00 again.
		s := &Schedule{RRule: &RRule{Freq: Hourly, TZID: "UTC", ByMinute: []int{0}}}
		got, err := s.Next(base, base.Add(-3*time.Second))
		want := base.Add(time.Hour)
		if err != nil || !got.Equal(want) {
			t.Fatalf("Next = %v, %v; want %v", got, err, want)
		}
	})
	t.Run("RRuleTimeZone", func(t *testing.T) {
		t.Parallel()
		// 09:30 in Paris is 08:30 UTC in winter.
		s := &Schedule{RRule: &RRule{Freq: Daily, TZID: "Europe/Paris", ByHour: []int{9}, ByMinute: []int{30}}}
		got, err := s.Next(base, base)
		want := time.Date(2026, 12, 4, 8, 30, 0, 0, time.UTC)
		if err != nil || !got.Equal(want) {
			t.Fatalf("Next = %v, %v; want %v", got, err, want)
		}
	})
	t.Run("RRuleWeekly", func(t *testing.T) {
		t.Parallel()
		// 2026-12-03 is a Thursday; the next Monday at 06:00 is the 7th.
		s := &Schedule{RRule: &RRule{Freq: Weekly, TZID: "UTC", ByWeekday: []string{"MO"}, ByHour: []int{6},
			ByMinute: []int{0}}}
		got, err := s.Next(base, base)
		want := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
		if err != nil || !got.Equal(want) {
			t.Fatalf("Next = %v, %v; want %v", got, err, want)
		}
	})
	t.Run("RRuleMonthlyLastDay", func(t *testing.T) {
		t.Parallel()
		s := &Schedule{RRule: &RRule{Freq: Monthly, TZID: "UTC", ByMonthDay: []int{-1}, ByHour: []int{0},
			ByMinute: []int{0}}}
		got, err := s.Next(base, base)
		want := time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)
		if err != nil || !got.Equal(want) {
			t.Fatalf("Next = %v, %v; want %v", got, err, want)
		}
	})
}

func TestSchedule_First(t *testing.T) {
	t.Parallel()
	got, err := (&Schedule{Interval: "5m"}).First(base)
	if err != nil || !got.Equal(base) {
		t.Fatalf("First(interval) = %v, %v; want now", got, err)
	}
	s := &Schedule{RRule: &RRule{Freq: Daily, TZID: "UTC", ByHour: []int{12}, ByMinute: []int{0}}}
	got, err = s.First(base)
	if want := base.Add(2 * time.Hour); err != nil || !got.Equal(want) {
		t.Fatalf("First(rrule) = %v, %v; want %v", got, err, want)
	}
	start := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	s = &Schedule{RRule: &RRule{Freq: Daily, TZID: "UTC", DTStart: &start}}
	got, err = s.First(base)
	if err != nil || !got.Equal(start) {
		t.Fatalf("First(rrule with dtstart) = %v, %v; want %v", got, err, start)
	}
}
