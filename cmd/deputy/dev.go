package main

import (
	"errors"
	"io"
	"log/slog"
)

// startDev starts the development stand-ins and points cfg at them.
//
// TODO(deputy): wire devserver/esdev and devserver/uiamdev once uiamdev
// lands.
func startDev(_ *Config, _ *slog.Logger, _ *env) (io.Closer, error) {
	return nil, errors.New("serve --dev: this build has no development stand-ins yet")
}
