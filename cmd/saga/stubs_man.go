package main

import "github.com/spf13/cobra"

// Placeholder until the man-page generator lands; replaced by gendocs.go.
func newGenManCmd(a *app) *cobra.Command {
	return &cobra.Command{Use: "gen-man DIR", Hidden: true, Short: "Write the man pages into DIR"}
}
