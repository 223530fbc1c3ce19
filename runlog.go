package deputy

import (
	"context"
	"log/slog"
)

// runLogger returns a logger that adds attrs to each record it handles.
//
// Logger.With would format attrs for the handler at once, which costs more
// than a run of a small task; most runs log nothing, so the attributes are
// only added to the records a run does log.
func runLogger(l *slog.Logger, attrs ...slog.Attr) *slog.Logger {
	return slog.New(&runHandler{h: l.Handler(), attrs: attrs})
}

type runHandler struct {
	h     slog.Handler
	attrs []slog.Attr
}

func (r *runHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return r.h.Enabled(ctx, level)
}

func (r *runHandler) Handle(ctx context.Context, rec slog.Record) error {
	// The run's attributes come first, as Logger.With would put them.
	out := slog.NewRecord(rec.Time, rec.Level, rec.Message, rec.PC)
	out.AddAttrs(r.attrs...)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(a)
		return true
	})
	return r.h.Handle(ctx, out)
}

// WithAttrs and WithGroup hand over to the handler's own, with the run's
// attributes applied first.
func (r *runHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return r.h.WithAttrs(r.attrs).WithAttrs(attrs)
}

func (r *runHandler) WithGroup(name string) slog.Handler {
	return r.h.WithAttrs(r.attrs).WithGroup(name)
}
