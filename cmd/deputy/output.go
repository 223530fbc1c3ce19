package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/deputyhq/deputy"
)

// taskView is the part of a task's JSON the tables show. It is decoded
// loosely, so that the CLI keeps working when the API adds fields.
type taskView struct {
	ID          string           `json:"id"`
	Type        string           `json:"task_type"`
	Status      string           `json:"status"`
	Enabled     bool             `json:"enabled"`
	Schedule    *deputy.Schedule `json:"schedule"`
	RunAt       time.Time        `json:"run_at"`
	StartedAt   *time.Time       `json:"started_at"`
	Attempts    int              `json:"attempts"`
	SpaceID     string           `json:"space_id"`
	Scope       []string         `json:"scope"`
	OwnerID     string           `json:"owner_id"`
	Params      json.RawMessage  `json:"params"`
	State       json.RawMessage  `json:"state"`
	UserScope   json.RawMessage  `json:"user_scope"`
	ScheduledAt time.Time        `json:"scheduled_at"`
}

// printJSON writes v indented; raw JSON is re-indented.
func printJSON(w io.Writer, v any) error {
	if raw, ok := v.(json.RawMessage); ok {
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return fmt.Errorf("format response: %w", err)
		}
		buf.WriteByte('\n')
		_, err := w.Write(buf.Bytes())
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printTask writes one task: as indented JSON, or as fields for people.
func printTask(w io.Writer, output string, raw json.RawMessage) error {
	if output == "json" {
		return printJSON(w, raw)
	}
	var t taskView
	if err := json.Unmarshal(raw, &t); err != nil {
		return fmt.Errorf("decode task: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("id", t.ID)
	row("type", t.Type)
	row("status", t.Status)
	row("enabled", strconv.FormatBool(t.Enabled))
	row("schedule", scheduleText(t.Schedule))
	row("run_at", timeText(t.RunAt))
	if t.StartedAt != nil {
		row("started_at", timeText(*t.StartedAt))
	}
	row("attempts", strconv.Itoa(t.Attempts))
	row("space", t.SpaceID)
	if len(t.Scope) > 0 {
		row("scope", strings.Join(t.Scope, ","))
	}
	if t.OwnerID != "" {
		row("owner", t.OwnerID)
	}
	row("params", compactJSON(t.Params))
	row("state", compactJSON(t.State))
	if len(t.UserScope) > 0 && string(t.UserScope) != "null" {
		row("user_scope", compactJSON(t.UserScope))
	}
	return tw.Flush()
}

// printTaskTable writes tasks as a table.
func printTaskTable(w io.Writer, tasks []taskView) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSTATUS\tENABLED\tSCHEDULE\tRUN AT\tATTEMPTS")
	for _, t := range tasks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\t%s\t%d\n", t.ID, t.Type, t.Status, t.Enabled,
			scheduleText(t.Schedule), timeText(t.RunAt), t.Attempts)
	}
	return tw.Flush()
}

// scheduleText describes a schedule in a few words.
func scheduleText(s *deputy.Schedule) string {
	switch {
	case s == nil:
		return "once"
	case s.Interval != "":
		return "every " + s.Interval
	case s.RRule != nil:
		return rruleText(s.RRule)
	default:
		return "-"
	}
}

// rruleText describes an rrule on one short line, such as
// "DAILY Europe/Paris byhour=9 byminute=0"; long lists are cut.
func rruleText(r *deputy.RRule) string {
	parts := []string{r.Freq}
	if r.Interval > 1 {
		parts[0] += "/" + strconv.Itoa(r.Interval)
	}
	parts = append(parts, r.TZID)
	ints := func(name string, vs []int) {
		if len(vs) == 0 {
			return
		}
		strs := make([]string, len(vs))
		for i, v := range vs {
			strs[i] = strconv.Itoa(v)
		}
		parts = append(parts, name+"="+cutList(strs))
	}
	ints("byhour", r.ByHour)
	ints("byminute", r.ByMinute)
	if len(r.ByWeekday) > 0 {
		parts = append(parts, "byweekday="+cutList(r.ByWeekday))
	}
	ints("bymonthday", r.ByMonthDay)
	return "rrule " + strings.Join(parts, " ")
}

// cutList joins a list, keeping the first items of a long one.
func cutList(vs []string) string {
	const keep = 4
	if len(vs) <= keep+1 {
		return strings.Join(vs, ",")
	}
	return strings.Join(vs[:keep], ",") + fmt.Sprintf(",…(%d)", len(vs))
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func compactJSON(raw json.RawMessage) string {
	var buf bytes.Buffer
	if len(raw) == 0 || json.Compact(&buf, raw) != nil {
		return "{}"
	}
	return buf.String()
}
