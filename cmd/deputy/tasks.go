package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/client"
)

// Defaults of the tasks commands.
const defaultServer = "http://127.0.0.1:7420"

// tasksFlags are the flags every tasks command shares.
type tasksFlags struct {
	server string
	space  string
	auth   string
	output string
}

func newTasksCmd(e *env) *cobra.Command {
	var tf tasksFlags
	cmd := &cobra.Command{
		Use:   "tasks",
		Short: "Schedule, inspect and change tasks through the HTTP API",
		Long: `Schedule, inspect and change tasks through a running daemon's HTTP API.

The Authorization header is taken from --auth, else from $DEPUTY_AUTHORIZATION
(prefer the variable: flags are visible to other users of the machine).

Exit codes: 0 ok, 1 error, 2 invalid input, 3 not found, 4 conflict,
5 unauthorized or forbidden, 6 daemon unavailable.`,
		Args: cobra.ArbitraryArgs,
		RunE: helpOrUnknown,
	}
	pf := cmd.PersistentFlags()
	server, _ := e.lookupEnv("DEPUTY_SERVER")
	pf.StringVar(&tf.server, "server", cmp.Or(server, defaultServer), "daemon URL (env DEPUTY_SERVER)")
	pf.StringVar(&tf.space, "space", "", "space to work in (default: the default space)")
	pf.StringVar(&tf.auth, "auth", "", "Authorization header value (env DEPUTY_AUTHORIZATION)")
	pf.StringVarP(&tf.output, "output", "o", "table", "output format: table or json")
	cmd.AddCommand(
		newScheduleCmd(e, &tf),
		newGetCmd(e, &tf),
		newListCmd(e, &tf),
		newRemoveCmd(e, &tf),
		newRunSoonCmd(e, &tf),
		newEnableCmd(e, &tf, true),
		newEnableCmd(e, &tf, false),
	)
	return cmd
}

// client returns the API client and checks the output format.
func (tf *tasksFlags) client(e *env) (*client.Client, error) {
	if tf.output != "table" && tf.output != "json" {
		return nil, usagef("--output %q must be table or json", tf.output)
	}
	auth := tf.auth
	if auth == "" {
		auth, _ = e.lookupEnv("DEPUTY_AUTHORIZATION")
	}
	return newAPIClient(tf.server, tf.space, deputy.Secret(auth))
}

// scheduleFlags are the flags of tasks schedule.
type scheduleFlags struct {
	file, id, taskType, params, state, interval, rrule, runAt, timeout string
	scope                                                              []string
	disabled                                                           bool
}

func newScheduleCmd(e *env, tf *tasksFlags) *cobra.Command {
	var sf scheduleFlags
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Schedule a task",
		Example: `  deputy tasks schedule --type http --interval 10s \
    --params '{"url":"http://127.0.0.1:7420/api/task_manager/_health"}'
  deputy tasks schedule --type noop \
    --rrule '{"freq":"DAILY","tzid":"Europe/Paris","byhour":[9],"byminute":[0]}'
  deputy tasks schedule -f task.json`,
		Args: args(cobra.NoArgs),
	}
	f := cmd.Flags()
	f.StringVarP(&sf.file, "file", "f", "", "read the task as JSON from a file, or - for stdin")
	f.StringVar(&sf.id, "id", "", "task id (default: generated)")
	f.StringVar(&sf.taskType, "type", "", "task type, such as http or noop")
	f.StringVar(&sf.params, "params", "", "params as a JSON object")
	f.StringVar(&sf.state, "state", "", "initial state as a JSON object")
	f.StringVar(&sf.interval, "interval", "", "run every interval, such as 30s, 5m, 1h or 1d")
	f.StringVar(&sf.rrule, "rrule", "", "run at the occurrences of an rrule, as JSON")
	f.StringVar(&sf.runAt, "run-at", "", "first run, an RFC 3339 time (default: now)")
	f.StringVar(&sf.timeout, "timeout-override", "", "timeout of a one-off task, such as 2m")
	f.StringSliceVar(&sf.scope, "scope", nil, "scopes, comma-separated")
	f.BoolVar(&sf.disabled, "disabled", false, "schedule the task disabled")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := tf.client(e)
		if err != nil {
			return err
		}
		body, err := sf.body(cmd, e.stdin)
		if err != nil {
			return err
		}
		var t json.RawMessage
		if err := c.Do(cmd.Context(), http.MethodPost, "/api/tasks", nil, body, &t); err != nil {
			return err
		}
		return printTask(e.stdout, tf.output, t)
	}
	return cmd
}

// body returns the JSON body of the new task, from the file or the flags.
func (sf *scheduleFlags) body(cmd *cobra.Command, stdin io.Reader) (json.RawMessage, error) {
	if sf.file != "" {
		for _, name := range []string{"id", "type", "params", "state", "interval", "rrule", "run-at",
			"timeout-override", "scope", "disabled"} {
			if cmd.Flags().Changed(name) {
				return nil, usagef("--%s cannot be combined with -f", name)
			}
		}
		return readJSONFile(sf.file, stdin)
	}
	if sf.taskType == "" {
		return nil, usagef("--type is required (or give the task as JSON with -f)")
	}
	if sf.interval != "" && sf.rrule != "" {
		return nil, usagef("--interval and --rrule are mutually exclusive")
	}
	m := map[string]any{"task_type": sf.taskType}
	setStr := func(key, v string) {
		if v != "" {
			m[key] = v
		}
	}
	setStr("id", sf.id)
	setStr("run_at", sf.runAt)
	setStr("timeout_override", sf.timeout)
	for key, v := range map[string]string{"params": sf.params, "state": sf.state} {
		if v == "" {
			continue
		}
		if !json.Valid([]byte(v)) {
			return nil, usagef("--%s is not valid JSON", key)
		}
		m[key] = json.RawMessage(v)
	}
	switch {
	case sf.interval != "":
		m["schedule"] = map[string]any{"interval": sf.interval}
	case sf.rrule != "":
		if !json.Valid([]byte(sf.rrule)) {
			return nil, usagef("--rrule is not valid JSON")
		}
		m["schedule"] = map[string]any{"rrule": json.RawMessage(sf.rrule)}
	}
	if len(sf.scope) > 0 {
		m["scope"] = sf.scope
	}
	if sf.disabled {
		m["enabled"] = false
	}
	return json.Marshal(m)
}

// readJSONFile reads a JSON document from path, or from stdin for "-".
func readJSONFile(path string, stdin io.Reader) (json.RawMessage, error) {
	var (
		b   []byte
		err error
	)
	if path == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, usagef("read %s: %v", path, err)
	}
	if !json.Valid(b) {
		return nil, usagef("%s is not valid JSON", path)
	}
	return b, nil
}

func newGetCmd(e *env, tf *tasksFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a task",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := tf.client(e)
			if err != nil {
				return err
			}
			var t json.RawMessage
			path := "/api/tasks/" + url.PathEscape(a[0])
			if err := c.Do(cmd.Context(), http.MethodGet, path, nil, nil, &t); err != nil {
				return err
			}
			return printTask(e.stdout, tf.output, t)
		},
	}
}

func newListCmd(e *env, tf *tasksFlags) *cobra.Command {
	var (
		types, statuses []string
		scope, after    string
		size            int
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tasks",
		Args:  args(cobra.NoArgs),
	}
	f := cmd.Flags()
	f.StringSliceVar(&types, "type", nil, "only these task types")
	f.StringSliceVar(&statuses, "status", nil, "only these statuses, such as idle or running")
	f.StringVar(&scope, "scope", "", "only tasks with this scope")
	f.IntVar(&size, "size", 0, "page size (default: the server's)")
	f.StringVar(&after, "after", "", "continue after this page token")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := tf.client(e)
		if err != nil {
			return err
		}
		q := url.Values{}
		if len(types) > 0 {
			q.Set("task_type", strings.Join(types, ","))
		}
		if len(statuses) > 0 {
			q.Set("status", strings.Join(statuses, ","))
		}
		if scope != "" {
			q.Set("scope", scope)
		}
		if size != 0 {
			q.Set("size", strconv.Itoa(size))
		}
		if after != "" {
			q.Set("after", after)
		}
		var raw json.RawMessage
		if err := c.Do(cmd.Context(), http.MethodGet, "/api/tasks", q, nil, &raw); err != nil {
			return err
		}
		if tf.output == "json" {
			return printJSON(e.stdout, raw)
		}
		var page struct {
			Tasks []taskView `json:"tasks"`
			Next  string     `json:"next"`
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			return fmt.Errorf("decode response: %w", err)
		}
		if err := printTaskTable(e.stdout, page.Tasks); err != nil {
			return err
		}
		if page.Next != "" {
			_, err = fmt.Fprintf(e.stdout, "\nmore: --after %s\n", page.Next)
		}
		return err
	}
	return cmd
}

func newRemoveCmd(e *env, tf *tasksFlags) *cobra.Command {
	var ignoreMissing bool
	cmd := &cobra.Command{
		Use:     "remove ID...",
		Aliases: []string{"rm", "delete"},
		Short:   "Remove tasks",
		Args:    args(cobra.MinimumNArgs(1)),
	}
	cmd.Flags().BoolVar(&ignoreMissing, "ignore-missing", false, "a missing task is not an error")
	cmd.RunE = func(cmd *cobra.Command, ids []string) error {
		c, err := tf.client(e)
		if err != nil {
			return err
		}
		q := url.Values{}
		if ignoreMissing {
			q.Set("ignore_missing", "true")
		}
		var (
			removed = []string{}
			failed  []error
		)
		for _, id := range ids {
			err := c.Do(cmd.Context(), http.MethodDelete, "/api/tasks/"+url.PathEscape(id), q, nil, nil)
			if err != nil {
				failed = append(failed, fmt.Errorf("remove %s: %w", id, err))
				continue
			}
			removed = append(removed, id)
		}
		if tf.output == "json" {
			if err := printJSON(e.stdout, map[string]any{"removed": removed}); err != nil {
				return err
			}
		} else {
			for _, id := range removed {
				fmt.Fprintf(e.stdout, "removed %s\n", id)
			}
		}
		return reportAll(e.stderr, failed)
	}
	return cmd
}

func newRunSoonCmd(e *env, tf *tasksFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "run-soon ID",
		Short: "Make an idle task due now",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := tf.client(e)
			if err != nil {
				return err
			}
			var t json.RawMessage
			path := "/api/tasks/" + url.PathEscape(a[0]) + "/_run_soon"
			if err := c.Do(cmd.Context(), http.MethodPost, path, nil, nil, &t); err != nil {
				return err
			}
			return printTask(e.stdout, tf.output, t)
		},
	}
}

// newEnableCmd returns tasks enable, or tasks disable.
func newEnableCmd(e *env, tf *tasksFlags, enable bool) *cobra.Command {
	var runSoon, clearState bool
	cmd := &cobra.Command{
		Use:   "enable ID...",
		Short: "Enable tasks, so that they are claimed again",
		Args:  args(cobra.MinimumNArgs(1)),
	}
	path := "/api/tasks/_bulk_enable"
	if enable {
		cmd.Flags().BoolVar(&runSoon, "run-soon", false, "make the enabled idle tasks due now")
	} else {
		cmd.Use, cmd.Short = "disable ID...", "Disable tasks, so that they are not claimed"
		path = "/api/tasks/_bulk_disable"
		cmd.Flags().BoolVar(&clearState, "clear-state", false, "also reset the tasks' state")
	}
	cmd.RunE = func(cmd *cobra.Command, ids []string) error {
		c, err := tf.client(e)
		if err != nil {
			return err
		}
		body := map[string]any{"ids": ids}
		if runSoon {
			body["run_soon"] = true
		}
		if clearState {
			body["clear_state"] = true
		}
		var raw json.RawMessage
		if err := c.Do(cmd.Context(), http.MethodPost, path, nil, body, &raw); err != nil {
			return err
		}
		return printBulk(e, tf.output, raw)
	}
	return cmd
}

// bulkResponse is the answer of a bulk call.
type bulkResponse struct {
	Tasks  []taskView `json:"tasks"`
	Errors []struct {
		ID     string `json:"id"`
		Status int    `json:"status"`
		Error  struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	} `json:"errors"`
}

// printBulk prints the tasks a bulk call changed and reports its per-id
// errors on stderr.
func printBulk(e *env, output string, raw json.RawMessage) error {
	var resp bulkResponse
	if err := json.Unmarshal(raw, &resp); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	if output == "json" {
		if err := printJSON(e.stdout, raw); err != nil {
			return err
		}
	} else if err := printTaskTable(e.stdout, resp.Tasks); err != nil {
		return err
	}
	var failed []error
	for _, be := range resp.Errors {
		code := cmp.Or(be.Error.Code, statusCode(be.Status))
		failed = append(failed, fmt.Errorf("%s: %w", be.ID, deputy.Errorf(code, "%s", be.Error.Message)))
	}
	return reportAll(e.stderr, failed)
}

// reportAll prints every error but the last and returns the last, so that
// each is shown once and the exit code is that of the last failure.
func reportAll(w io.Writer, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	for _, err := range errs[:len(errs)-1] {
		fmt.Fprintf(w, "deputy: %s\n", errorText(err))
	}
	return errs[len(errs)-1]
}
