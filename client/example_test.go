package client_test

import (
	"context"
	"fmt"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/client"
)

// Schedule a recurring task in a space, on behalf of the user the
// Authorization header names, and tell its failures apart by code.
func Example() {
	c, err := client.New(client.Config{
		BaseURL:       "http://127.0.0.1:7420",
		Space:         "ops",
		Authorization: deputy.Secret("ApiKey ..."),
	})
	if err != nil {
		panic(err)
	}
	task, err := c.Schedule(context.Background(), deputy.NewTask{
		ID:       "nightly-report",
		Type:     "http",
		Schedule: &deputy.Schedule{Interval: "1d"},
	})
	switch deputy.ErrorCode(err) {
	case "":
		fmt.Println("scheduled", task.ID, "to run at", task.RunAt)
	case deputy.ECONFLICT:
		fmt.Println("already scheduled")
	default:
		fmt.Println("cannot schedule:", deputy.ErrorMessage(err))
	}
}
