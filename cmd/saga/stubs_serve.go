package main

import "github.com/spf13/cobra"

// Placeholder until the config/daemon work lands; replaced by serve.go,
// config_cmd.go and completion.go.

func newServeCmd(a *app) *cobra.Command {
	return &cobra.Command{Use: "serve", Short: "Run the registry server in the foreground", RunE: func(*cobra.Command, []string) error { return nil }}
}

func newConfigCmd(a *app) *cobra.Command {
	return &cobra.Command{Use: "config", Short: "Show, check or create the configuration"}
}

func newCompletionCmd(a *app) *cobra.Command {
	return &cobra.Command{Use: "completion", Short: "Print shell completions"}
}
