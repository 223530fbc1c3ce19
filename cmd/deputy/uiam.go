package main

import (
	"fmt"
	"log/slog"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/uiam"
)

// newUIAM returns the UIAM key service of the configuration.
func newUIAM(cfg Config, log *slog.Logger) (deputy.KeyService, error) {
	if cfg.UIAM.SharedSecret == "" {
		return nil, fmt.Errorf("config: uiam.shared_secret: required with uiam.url")
	}
	svc, err := uiam.New(uiam.Config{
		URL:          cfg.UIAM.URL,
		SharedSecret: cfg.UIAM.SharedSecret,
		Logger:       log.With(slog.String("component", "uiam")),
	})
	if err != nil {
		return nil, fmt.Errorf("config: uiam: %w", err)
	}
	return svc, nil
}
