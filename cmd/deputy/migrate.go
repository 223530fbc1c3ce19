package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newMigrateCmd(e *env) *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the database migrations and exit",
		Long: `Apply the database migrations and exit.

For PostgreSQL this applies the pending migrations, taking an advisory lock so
that nodes migrating at once take turns; "deputy serve" does the same on start
unless --no-migrate is given. For SQLite it opens the database, which applies
its migrations.`,
		Args: args(cobra.NoArgs),
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVar(&configPath, "config", "", "YAML configuration file")
	addConfigFlags(f)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loadConfig(configPath, e.lookupEnv, cmd.Flags())
		if err != nil {
			return usageError{err}
		}
		log := cfg.newLogger(e.stderr)
		store, desc, err := openStore(cmd.Context(), cfg, true, log)
		if err != nil {
			return err
		}
		if err := store.Close(); err != nil {
			return fmt.Errorf("close store: %w", err)
		}
		_, err = fmt.Fprintf(e.stdout, "migrated %s\n", desc)
		return err
	}
	return cmd
}
