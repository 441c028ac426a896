package main

import "github.com/spf13/cobra"

// Placeholder until the service commands land; replaced by service_cmd.go.
func newServiceCmds(a *app) []*cobra.Command { return nil }
