package main

import (
	"errors"
	"log/slog"

	"github.com/deputyhq/deputy"
)

// newUIAM returns the UIAM key service.
//
// TODO(deputy): wire github.com/deputyhq/deputy/uiam once that package
// lands; until then a configured uiam.url is refused rather than ignored.
func newUIAM(_ Config, _ *slog.Logger) (deputy.KeyService, error) {
	return nil, errors.New("config: uiam: this build has no UIAM key service yet")
}
