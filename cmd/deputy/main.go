// Command deputy is deputy's daemon and command-line client.
//
//	deputy serve [--examples] [--dev]   run the daemon
//	deputy migrate                      apply database migrations
//	deputy tasks ...                    schedule and manage tasks over the HTTP API
//	deputy version                      print the version
//
// The daemon reads its configuration from a YAML file (--config), from
// DEPUTY_* environment variables and from flags, in that order of
// precedence from low to high; see [Config].
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/client"
)

// Exit codes.
const (
	exitOK           = 0
	exitError        = 1
	exitUsage        = 2
	exitNotFound     = 3
	exitConflict     = 4
	exitUnauthorized = 5
	exitUnavailable  = 6
)

// env is what a command may touch of its process, swappable in tests.
type env struct {
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	lookupEnv func(string) (string, bool)
}

func main() {
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, lookupEnv: os.LookupEnv}
	os.Exit(run(context.Background(), e, os.Args[1:]))
}

// run runs the command line args and returns the exit code.
func run(ctx context.Context, e *env, args []string) int {
	root := newRootCmd(e)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(e.stderr, "deputy: %s\n", errorText(err))
	return exitCode(err)
}

func newRootCmd(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:           "deputy",
		Short:         "A durable task manager that runs tasks as the users who scheduled them",
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.ArbitraryArgs,
		RunE:          helpOrUnknown,
	}
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServeCmd(e), newMigrateCmd(e), newVersionCmd(e), newTasksCmd(e))
	root.AddCommand(newBenchCmd(e))
	return root
}

// helpOrUnknown is the run function of commands that only group others:
// alone they print their help, and with an argument they report an unknown
// command (cobra would print the help and succeed).
func helpOrUnknown(cmd *cobra.Command, a []string) error {
	if len(a) > 0 {
		return usagef("unknown command %q for %q", a[0], cmd.CommandPath())
	}
	return cmd.Help()
}

// usageError is a mistake on the command line.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// usagef returns a usage error.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// args wraps a cobra argument check so that its error is a usage error.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := check(cmd, a); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// exitCode maps an error to the exit code of its kind.
func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) || strings.HasPrefix(err.Error(), "unknown command") {
		return exitUsage
	}
	switch deputy.ErrorCode(err) {
	case deputy.EINVALID:
		return exitUsage
	case deputy.ENOTFOUND:
		return exitNotFound
	case deputy.ECONFLICT:
		return exitConflict
	case deputy.EUNAUTHORIZED, deputy.EFORBIDDEN:
		return exitUnauthorized
	case deputy.EUNAVAILABLE:
		return exitUnavailable
	default:
		return exitError
	}
}

// errorText is what the user sees of an error: its text, with the error
// of an API answer or a domain error shortened to its message and the
// context around it kept.
func errorText(err error) string {
	full := err.Error()
	if ce, ok := errors.AsType[*client.Error](err); ok && ce.Err != nil {
		return strings.Replace(full, ce.Error(), ce.Err.Message, 1)
	}
	if de, ok := errors.AsType[*deputy.Error](err); ok {
		return strings.Replace(full, de.Error(), de.Message, 1)
	}
	return full
}
