// Package deputy is a durable, distributed task manager that runs every
// background task with the credentials of the user who scheduled it.
//
// A [Manager] schedules tasks into a [Store], claims due tasks across any
// number of nodes, runs them through the [Definition] registered for their
// type and records the outcome. Tasks may be one-off or recurring (an
// interval or an RFC 5545 recurrence rule).
//
// Usage rules:
//
//   - Register every definition before calling [Manager.Start]. A node only
//     claims tasks whose type it has registered; tasks of other types are left
//     for nodes that know them.
//   - Every write is conditional on the [Task.Version] it read. A write that
//     lost a race fails with an [Error] of code [ECONFLICT]; bulk calls retry
//     such conflicts a bounded number of times and report the rest per id.
//   - A run's context is cancelled when the task times out and when the
//     manager stops. Task code must return promptly once it is done.
//   - Task code never sees stored secrets. A task scheduled with a caller's
//     credentials receives a [Request] that presents an API key on its behalf.
package deputy
