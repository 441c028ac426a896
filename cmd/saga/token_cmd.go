package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sagaproject/saga/pkg/auth"
	"github.com/sagaproject/saga/pkg/client"
)

// newTokenCmd returns `saga token` and its subcommands, which manage the
// API's tokens (SPEC §6).
func newTokenCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage the tokens that clients present to the API",
		Long: "Make, list and revoke the tokens that clients send as\n" +
			"\"Authorization: Bearer SECRET\" when the server has auth.enabled.\n" +
			"A token has a role (read, write or admin), an optional service scope\n" +
			"and an optional expiry; the server keeps only its secret's hash.",
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newTokenBootstrapCmd(a), newTokenCreateCmd(a), newTokenListCmd(a), newTokenRevokeCmd(a))
	return cmd
}

func newTokenBootstrapCmd(a *app) *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Make the first admin token",
		Long: "Make the first admin token and print its secret. The server grants it once,\n" +
			"while no token exists, and only to a client on a loopback address.",
		Example: "  saga token bootstrap\n  saga token bootstrap -o json",
		Args:    cobra.NoArgs,
	}
	cmd.RunE = withClient(a, &flags, func(ctx context.Context, c *clientCmd, _ []string) error {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		tok, err := c.client.Bootstrap(ctx)
		if err != nil {
			return err
		}
		return c.printNewToken(tok)
	})
	flags.add(cmd)
	return cmd
}

func newTokenCreateCmd(a *app) *cobra.Command {
	var (
		flags   clientFlags
		spec    client.TokenSpec
		expires string
	)
	cmd := &cobra.Command{
		Use:   "create --role read|write|admin [--service GLOB]... [--expires DURATION] [--description TEXT]",
		Short: "Make a token and print its secret",
		Long: "Make a token and print its secret, which is shown this once only.\n" +
			"--service limits the token to the services whose names match (repeatable;\n" +
			"* and ? match any characters); without it the token covers every service.\n" +
			"Without --expires the token never expires. It takes an admin token.",
		Example: "  saga token create --role write --service 'web*' --expires 720h --description deploys\n" +
			"  saga token create --role read -o json",
		Args: cobra.NoArgs,
	}
	cmd.RunE = withClient(a, &flags, func(ctx context.Context, c *clientCmd, _ []string) error {
		// Check what can be checked here, so a typo sends nothing.
		if _, err := auth.ParseRole(spec.Role); err != nil {
			return fmt.Errorf("role: %w", err)
		}
		for _, glob := range spec.Services {
			if err := auth.CheckScope(glob); err != nil {
				return fmt.Errorf("service: %w", err)
			}
		}
		if expires != "" {
			d, err := parseDuration("expires", expires)
			if err != nil {
				return err
			}
			if d == 0 {
				return fmt.Errorf("expires: %q must be more than 0; leave --expires out for a token that never expires", expires)
			}
			spec.ExpiresIn = d
		}
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		tok, err := c.client.CreateToken(ctx, spec)
		if err != nil {
			return err
		}
		return c.printNewToken(tok)
	})
	flags.add(cmd)
	f := cmd.Flags()
	f.StringVar(&spec.Role, "role", "", "what the token may do: read, write or admin (required)")
	f.StringArrayVar(&spec.Services, "service", nil, "limit the token to services matching this name glob, e.g. 'web*' (repeatable; default: every service)")
	f.StringVar(&expires, "expires", "", "expire the token after this long, e.g. 720h (default: never)")
	f.StringVar(&spec.Description, "description", "", "what the token is for, shown in the list")
	_ = cmd.MarkFlagRequired("role")
	_ = cmd.RegisterFlagCompletionFunc("role", cobra.FixedCompletions(
		[]cobra.Completion{client.RoleRead, client.RoleWrite, client.RoleAdmin}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// printNewToken prints a token just made. Its secret is shown this once,
// so the advice goes to stderr, where a script that keeps stdout sees it too.
func (c *clientCmd) printNewToken(tok client.NewToken) error {
	var err error
	if c.json {
		err = writeJSON(c.out, struct {
			Accessor string `json:"accessor"`
			Secret   string `json:"secret"`
		}{tok.Accessor, tok.Secret})
	} else {
		rows := [][]string{
			{"accessor", tok.Accessor},
			{"secret", tok.Secret},
			{"role", tok.Role},
			{"services", formatScope(tok.Services)},
			{"expires", formatExpiry(tok.Token)},
		}
		if tok.Description != "" {
			rows = append(rows, []string{"description", tok.Description})
		}
		err = writeTable(c.out, nil, rows)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(c.errOut, "saga: keep the secret safe: it is not shown again, and the server keeps only its hash")
	return nil
}

func newTokenListCmd(a *app) *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the tokens, without their secrets",
		Long: "List every token: its accessor, role, service scope, expiry and description.\n" +
			"Secrets are never shown. It takes an admin token.",
		Example: "  saga token list\n  saga token list -o json",
		Args:    cobra.NoArgs,
	}
	cmd.RunE = withClient(a, &flags, func(ctx context.Context, c *clientCmd, _ []string) error {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		tokens, err := c.client.Tokens(ctx)
		if err != nil {
			return err
		}
		if c.json {
			// The API's own answer, as for the other commands.
			return writeJSON(c.out, struct {
				Tokens []client.Token `json:"tokens"`
			}{tokens})
		}
		return writeTokens(c.out, tokens)
	})
	flags.add(cmd)
	return cmd
}

// writeTokens prints tokens as a table; writeTable escapes what the
// server sent, descriptions included.
func writeTokens(w io.Writer, tokens []client.Token) error {
	rows := make([][]string, 0, len(tokens))
	for _, t := range tokens {
		rows = append(rows, []string{t.Accessor, t.Role, formatScope(t.Services), formatExpiry(t), orDash(t.Description)})
	}
	return writeTable(w, []string{"ACCESSOR", "ROLE", "SERVICES", "EXPIRES", "DESCRIPTION"}, rows)
}

// formatScope prints a token's service globs; an unscoped token covers all.
func formatScope(globs []string) string {
	if len(globs) == 0 {
		return "all"
	}
	return strings.Join(globs, ",")
}

// formatExpiry prints when a token expires, and whether it has.
func formatExpiry(t client.Token) string {
	switch {
	case t.ExpiresAt.IsZero():
		return "never"
	case t.Expired:
		return formatTime(t.ExpiresAt) + " (expired)"
	}
	return formatTime(t.ExpiresAt)
}

func newTokenRevokeCmd(a *app) *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "revoke ACCESSOR",
		Short: "Revoke a token",
		Long: "Revoke the token with this accessor (see saga token list). Every Saga\n" +
			"that shares the store stops honouring it within a second. It takes an\n" +
			"admin token.",
		Example: "  saga token revoke 0b5c3e51-6f0d-4c8e-9a55-2f4b1c7d9e10",
		Args:    cobra.ExactArgs(1),
	}
	cmd.RunE = withClient(a, &flags, func(ctx context.Context, c *clientCmd, args []string) error {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		if err := c.client.RevokeToken(ctx, args[0]); err != nil {
			return err
		}
		if c.json {
			return writeJSON(c.out, map[string]any{"accessor": args[0], "revoked": true})
		}
		_, err := fmt.Fprintf(c.out, "revoked token %s\n", printable(args[0]))
		return err
	})
	cmd.ValidArgsFunction = completeAccessors(a, &flags)
	flags.add(cmd)
	return cmd
}

// completeAccessors completes the accessor of `saga token revoke` from the
// server's list, described by role and description.
func completeAccessors(a *app, flags *clientFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := flags.connect(a, io.Discard) // a shell is reading
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		tokens, err := c.client.Tokens(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		out := make([]cobra.Completion, 0, len(tokens))
		for _, t := range tokens {
			if isPrintable(t.Accessor) && !strings.ContainsAny(t.Accessor, " \t") { // the shell reads these lines
				out = append(out, cobra.CompletionWithDesc(t.Accessor, printable(t.Role+" "+t.Description)))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
