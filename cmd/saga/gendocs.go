package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newGenManCmd writes one man page per command (saga.1, saga-serve.1, …).
// The packages and release archives ship them; it is hidden because users
// read the pages, they do not make them.
func newGenManCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:    "gen-man DIR",
		Short:  "Write the man pages into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			when, err := manDate(a.getenv("SOURCE_DATE_EPOCH"))
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("gen-man: %w", err)
			}
			root := cmd.Root()
			disableAutoGenTag(root)
			header := &doc.GenManHeader{
				Title:   "SAGA",
				Section: "1",
				Date:    &when,
				Source:  "Saga " + Version(),
				Manual:  "Saga Manual",
			}
			if err := doc.GenManTree(root, header, dir); err != nil {
				return fmt.Errorf("gen-man: write pages into %s: %w", dir, err)
			}
			return nil
		},
	}
}

// manDate is the date printed in the pages: SOURCE_DATE_EPOCH when set,
// else the stamped build date, so the same commit gives the same pages.
func manDate(sourceDateEpoch string) (time.Time, error) {
	if sourceDateEpoch != "" {
		secs, err := strconv.ParseInt(sourceDateEpoch, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("gen-man: SOURCE_DATE_EPOCH %q is not a number of seconds", sourceDateEpoch)
		}
		return time.Unix(secs, 0).UTC(), nil
	}
	if _, _, built := buildInfo(); built != "unknown" {
		if t, err := time.Parse(time.RFC3339, built); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Now().UTC(), nil
}

// disableAutoGenTag drops cobra's "Auto generated … on DATE" footer, which
// would make the pages differ from one build to the next.
func disableAutoGenTag(cmd *cobra.Command) {
	cmd.DisableAutoGenTag = true
	for _, c := range cmd.Commands() {
		disableAutoGenTag(c)
	}
}
