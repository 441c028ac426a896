package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sagaproject/saga/pkg/config"
)

func newConfigCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show, check or create the configuration",
		Long: "Show, check or create the configuration. Layers, lowest first: built-in\n" +
			"defaults, the TOML file, the environment (SAGA_* and the older bare names),\n" +
			"command-line flags.",
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newConfigShowCmd(a), newConfigCheckCmd(a), newConfigInitCmd(a))
	return cmd
}

func newConfigShowCmd(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print each setting, its effective value and the layer that set it",
		Long: "Print each setting, its effective value and the layer that set it, as\n" +
			"`saga serve` would see them with the same environment and flags.\n" +
			"Secrets (the password in redis.url) are masked.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("output: %q must be table or json", output)
			}
			cfg, err := config.Load(a.configOptions(cmd.Flags()))
			if err != nil {
				return err
			}
			if output == "json" {
				return writeConfigJSON(a, cfg)
			}
			return writeConfigTable(a, cfg)
		},
	}
	config.BindFlags(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func fileState(cfg *config.Config) string {
	switch {
	case cfg.File == "":
		return "none"
	case cfg.FileFound:
		return cfg.File
	}
	return cfg.File + " (not found; defaults apply)"
}

func writeConfigTable(a *app, cfg *config.Config) error {
	if _, err := fmt.Fprintf(a.stdout, "# file: %s\n", fileState(cfg)); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE\tFROM")
	for _, s := range cfg.Settings() {
		value := s.Value
		if value == "" {
			value = `""`
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Key, value, s.Source)
	}
	return tw.Flush()
}

type configJSON struct {
	File      string        `json:"file"`
	FileFound bool          `json:"file_found"`
	Settings  []settingJSON `json:"settings"`
}

type settingJSON struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Layer string `json:"layer"`          // default, file, environment or flag
	From  string `json:"from,omitempty"` // the file, variable or flag
}

func writeConfigJSON(a *app, cfg *config.Config) error {
	out := configJSON{File: cfg.File, FileFound: cfg.FileFound}
	for _, s := range cfg.Settings() {
		from := s.Source.Name
		if s.Source.Layer == config.LayerFlag {
			from = "--" + from
		}
		out.Settings = append(out.Settings, settingJSON{Key: s.Key, Value: s.Value, Layer: s.Source.Layer.String(), From: from})
	}
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func newConfigCheckCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Load and validate the configuration; exit 0 when it is usable",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(a.configOptions(cmd.Flags()))
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "config ok (file: %s)\n", fileState(cfg))
			return err
		},
	}
	config.BindFlags(cmd.Flags())
	return cmd
}

func newConfigInitCmd(a *app) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write the commented default configuration file",
		Long: "Write the commented default configuration file to --config, else\n" +
			"$SAGA_CONFIG_DIR/config.toml, else " + config.SystemFile + " when run as root,\n" +
			"else ~/.saga/config.toml. An existing file is kept unless --force is given.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, _ := config.FilePath(a.configOptions(cmd.Flags()))
			if path == "" {
				return errors.New("no home directory to write ~/.saga/config.toml to; name a file with --config")
			}
			if err := config.WriteDefaultFile(path, force); err != nil {
				return err
			}
			_, err := fmt.Fprintf(a.stdout, "wrote %s\n", path)
			return err
		},
	}
	cmd.Flags().String(config.FlagConfig, "", "write to `FILE`")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing file")
	return cmd
}
