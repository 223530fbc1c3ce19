// Package devserver groups local stand-ins of the services deputy talks to,
// for development and tests only; they are not a security boundary.
//
//   - [github.com/deputyhq/deputy/devserver/esdev] serves Elasticsearch's
//     authentication, token and API key APIs.
//   - [github.com/deputyhq/deputy/devserver/uiamdev] serves UIAM's API key
//     APIs and issues development session tokens.
//   - [github.com/deputyhq/deputy/devserver/devtest] runs both for a test,
//     wired together on a settable clock.
//
// Both are http.Handlers with an injectable clock, meant for
// httptest.NewServer and for "deputy serve --dev". Their tests pin the wire
// contracts deputy relies on; this package's tests run deputy's clients
// against both stand-ins end to end.
package devserver
