// Package deps pins the modules deputy's packages use while they are being
// written, so that go mod tidy keeps them.
//
// TODO(deputy): delete this package once every module below is imported by
// a real package.
package deps

import (
	_ "github.com/elastic/go-elasticsearch/v8"
	_ "github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/spf13/cobra"
	_ "github.com/teambition/rrule-go"
	_ "go.uber.org/goleak"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/sync/errgroup"
	_ "modernc.org/sqlite"
)
