// Package builtin holds the task types that ship with deputy, so that the
// daemon is useful before anyone writes a definition of their own:
//
//   - [HTTP] ("http") makes one HTTP request described by its params and
//     records the response status and duration in the task's state. A
//     network error or an unexpected status fails the run, which then
//     retries by the usual rules. It can present the task user's API key,
//     but only to the hosts the Manager allows.
//   - [Noop] ("noop") does nothing, cheaply.
//   - [Fail] ("fail") fails until a given attempt, to show retries.
//   - [Sleep] ("sleep") waits for a duration or until its run is
//     cancelled, to show timeouts and long runs.
//
// Every definition validates its params when a task is scheduled, so a bad
// task is rejected as invalid input instead of failing at run time.
package builtin
