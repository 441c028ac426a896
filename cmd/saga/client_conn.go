package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/sagaproject/saga/pkg/client"
	"github.com/sagaproject/saga/pkg/tlsfiles"
)

// connFlags say how a client command proves itself to the server and
// checks the server's certificate. Each flag falls back to its SAGA_
// environment variable.
type connFlags struct {
	token, tokenFile, caCert, clientCert, clientKey string

	tokenGiven bool // set by options: whether a token goes with the requests
}

func (f *connFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.token, "token", "", "API token (default $SAGA_TOKEN); --token-file keeps it out of the process list")
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding the API token (default $SAGA_TOKEN_FILE)")
	fs.StringVar(&f.caCert, "cacert", "", "PEM file of the CAs that the server's certificate must chain to (default $SAGA_CACERT, else the system's; for the local server, its server.tls.cert_file)")
	fs.StringVar(&f.clientCert, "client-cert", "", "client certificate (PEM) for a server that requires one (default $SAGA_CLIENT_CERT)")
	fs.StringVar(&f.clientKey, "client-key", "", "key of --client-cert (default $SAGA_CLIENT_KEY)")
}

// setting is a flag's value, else its environment variable's, with the
// name of the one that was used, for error messages.
func setting(flagName, flagValue, envName string, getenv func(string) string) (value, from string) {
	if flagValue != "" {
		return flagValue, "--" + flagName
	}
	if v := getenv(envName); v != "" {
		return v, envName
	}
	return "", ""
}

// options are the client options for addr: the token and the TLS
// settings. serverCert is the local server's certificate file when the
// address came from its configuration.
func (f *connFlags) options(getenv func(string) string, addr, serverCert string) ([]client.Option, error) {
	var opts []client.Option
	token, err := f.readToken(getenv)
	if err != nil {
		return nil, err
	}
	if token != "" {
		f.tokenGiven = true
		opts = append(opts, client.WithToken(token))
	}
	config, err := f.tlsConfig(getenv, addr, serverCert)
	if err != nil {
		return nil, err
	}
	if config != nil {
		opts = append(opts, client.WithTLS(config))
	}
	return opts, nil
}

// readToken returns the token from --token, --token-file, SAGA_TOKEN or
// SAGA_TOKEN_FILE, the first that is set.
func (f *connFlags) readToken(getenv func(string) string) (string, error) {
	switch {
	case f.token != "" && f.tokenFile != "":
		return "", errors.New("--token and --token-file: give one of them, not both")
	case f.token != "":
		return f.token, nil
	case f.tokenFile != "":
		return readTokenFile("--token-file", f.tokenFile)
	case getenv("SAGA_TOKEN") != "":
		return getenv("SAGA_TOKEN"), nil
	case getenv("SAGA_TOKEN_FILE") != "":
		return readTokenFile("SAGA_TOKEN_FILE", getenv("SAGA_TOKEN_FILE"))
	}
	return "", nil
}

// readTokenFile reads a token from a file; from names the setting.
func readTokenFile(from, file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: read the token: %w", from, err)
	}
	// A file written by echo or an editor ends with a line break.
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("%s: %s holds no token", from, file)
	}
	return token, nil
}

// tlsConfig is the TLS configuration that the flags and the environment
// ask for, or nil for Go's defaults (the system's CAs). Without a CA file,
// a client of the local server trusts that server's own certificate.
func (f *connFlags) tlsConfig(getenv func(string) string, addr, serverCert string) (*tls.Config, error) {
	caFile, _ := setting("cacert", f.caCert, "SAGA_CACERT", getenv)
	certFile, certFrom := setting("client-cert", f.clientCert, "SAGA_CLIENT_CERT", getenv)
	keyFile, keyFrom := setting("client-key", f.clientKey, "SAGA_CLIENT_KEY", getenv)
	switch {
	case certFile != "" && keyFile == "":
		return nil, fmt.Errorf("%s needs a key: set --client-key or SAGA_CLIENT_KEY", certFrom)
	case keyFile != "" && certFile == "":
		return nil, fmt.Errorf("%s needs a certificate: set --client-cert or SAGA_CLIENT_CERT", keyFrom)
	}
	var serverName string
	if caFile == "" && serverCert != "" {
		if name, ok := localServerName(serverCert, addr); ok {
			caFile, serverName = serverCert, name
		}
	}
	if caFile == "" && certFile == "" {
		return nil, nil
	}
	config, err := tlsfiles.ClientConfig(caFile, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	config.ServerName = serverName
	return config, nil
}

// localServerName tells whether the local server's certificate file can
// be read, and under which name to check it: the address's host when the
// certificate covers it, else a name the certificate does carry, since a
// certificate for saga.example.com is asked for on 127.0.0.1. The
// certificate itself is trusted, not a CA, so the name adds nothing to
// what is checked.
func localServerName(certFile, addr string) (string, bool) {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return "", false // not this user's to read: the system's CAs may still do
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return "", false
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", false
	}
	u, err := client.ParseAddr(addr)
	if err != nil || leaf.VerifyHostname(u.Hostname()) == nil {
		return "", true
	}
	switch {
	case len(leaf.DNSNames) > 0:
		return leaf.DNSNames[0], true
	case len(leaf.IPAddresses) > 0:
		return leaf.IPAddresses[0].String(), true
	}
	return "", true
}

// explainDenial adds to a request refused for want of a token how to give
// one, when none was given.
func (f *connFlags) explainDenial(err error) error {
	var apiErr *client.Error
	if f.tokenGiven || !errors.As(err, &apiErr) || apiErr.Code != client.CodeUnauthenticated {
		return err
	}
	return fmt.Errorf("%w; give a token with --token-file, --token, SAGA_TOKEN_FILE or SAGA_TOKEN", err)
}
