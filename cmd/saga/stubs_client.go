package main

import "github.com/spf13/cobra"

// Placeholder until the client commands land; replaced by client_cmd.go.
func newClientCmds(a *app) []*cobra.Command { return nil }
