package deputy

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
)

func TestRunLogger(t *testing.T) {
	var eager, lazy bytes.Buffer
	opts := &slog.HandlerOptions{
		Level: slog.LevelInfo,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}
	attrs := []slog.Attr{slog.String("task_id", "t1"), slog.Int("attempt", 2)}
	log := func(l *slog.Logger) {
		l.Info("ran", slog.String("k", "v"))
		l.Debug("not shown")
		l.With("a", 1).Warn("with")
		l.WithGroup("g").Error("grouped", slog.Int("n", 3))
	}
	log(slog.New(slog.NewTextHandler(&eager, opts)).With(slog.String("task_id", "t1"), slog.Int("attempt", 2)))
	log(runLogger(slog.New(slog.NewTextHandler(&lazy, opts)), attrs...))
	if lazy.String() != eager.String() {
		t.Fatalf("run logger wrote\n%s\nLogger.With writes\n%s", lazy.String(), eager.String())
	}
	if !runLogger(slog.New(slog.NewTextHandler(&lazy, opts))).Enabled(context.Background(), slog.LevelInfo) {
		t.Fatal("run logger disabled at the handler's level")
	}
}
