package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/devserver/esdev"
	"github.com/deputyhq/deputy/devserver/uiamdev"
)

// Names of the development mode's users and roles.
const (
	devUser        = "dev"
	devServiceUser = "deputy"
	devUserRole    = "deputy_dev_user"
)

// devEnv is the development mode: the Elasticsearch and UIAM stand-ins,
// served on loopback ports, and the credentials it made up for them.
type devEnv struct {
	esURL, uiamURL string
	password       string // of the dev user
	uiamToken      string // a UIAM session token of the dev user
	servers        []*http.Server
}

// startDev starts the stand-ins and points cfg at them: Elasticsearch (which
// authenticates deputy's API and grants "es" keys), UIAM (which grants
// "uiam" keys) and an encryption key generated once and kept in
// <data>/dev_encryption_key, so that tasks scheduled in an earlier session
// can still be decrypted. The stand-ins keep their users and keys in
// memory only.
func startDev(cfg *Config, log *slog.Logger) (*devEnv, error) {
	secret, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	d := &devEnv{}
	uiam := uiamdev.New(uiamdev.Config{
		SharedSecret: secret,
		SessionTTL:   24 * time.Hour,
		Logger:       log.With(slog.String("component", "uiamdev")),
	})
	uiam.AddUser(devUser, "viewer")
	if d.uiamURL, err = d.serve(uiam, log); err != nil {
		return nil, err
	}
	d.uiamToken = uiam.SessionToken(devUser)

	es := esdev.New(esdev.Config{
		UIAMURL:          d.uiamURL,
		UIAMSharedSecret: secret,
		Logger:           log.With(slog.String("component", "esdev")),
	})
	servicePassword, err := randomHex(16)
	if err != nil {
		d.Close()
		return nil, err
	}
	if d.password, err = randomHex(8); err != nil {
		d.Close()
		return nil, err
	}
	es.AddRole(devUserRole, "manage_token", "manage_own_api_key")
	es.AddUser(devServiceUser, servicePassword, "superuser")
	es.AddUser(devUser, d.password, devUserRole)
	if d.esURL, err = d.serve(es, log); err != nil {
		d.Close()
		return nil, err
	}

	cfg.Elasticsearch = ElasticsearchConfig{URL: d.esURL, Username: devServiceUser,
		Password: deputy.Secret(servicePassword)}
	cfg.UIAM = UIAMConfig{URL: d.uiamURL, SharedSecret: deputy.Secret(secret)}
	if cfg.AdminRole == "" {
		// The dev user administers its space: it may list pending keys.
		cfg.AdminRole = devUserRole
	}
	if cfg.EncryptionKey == "" {
		key, err := devEncryptionKey(cfg.Data)
		if err != nil {
			d.Close()
			return nil, err
		}
		cfg.EncryptionKey = deputy.Secret(key)
	}
	return d, nil
}

// serve serves h on a free loopback port and returns its URL.
func (d *devEnv) serve(h http.Handler, log *slog.Logger) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("dev: listen: %w", err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	d.servers = append(d.servers, srv)
	go func() { _ = srv.Serve(ln) }() // returns ErrServerClosed on Close
	return "http://" + ln.Addr().String(), nil
}

// Close stops the stand-ins.
func (d *devEnv) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, s := range d.servers {
		errs = append(errs, s.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// printBanner tells the developer how to use the development mode.
func (d *devEnv) printBanner(w io.Writer, addr string) {
	api := "http://" + selfAddr(addr)
	basic := base64.StdEncoding.EncodeToString([]byte(devUser + ":" + d.password))
	lines := []string{
		"",
		"==================== DEVELOPMENT MODE: not for production ====================",
		"Elasticsearch and UIAM are local stand-ins in this process, with in-memory",
		"users and keys; the encryption key is a generated one.",
		"",
		"  Elasticsearch stand-in: " + d.esURL,
		"  UIAM stand-in:          " + d.uiamURL,
		"  user:                   " + devUser + "   password: " + d.password,
		"",
		"Call deputy as " + devUser + " (tasks then run with API keys granted for " + devUser + "):",
		"  curl -u " + devUser + ":" + d.password + " " + api + "/api/tasks",
		"  export DEPUTY_AUTHORIZATION='Basic " + basic + "'   # for deputy tasks ...",
		"Get an Elasticsearch access token for " + devUser + ":",
		"  curl -s -u " + devUser + ":" + d.password + " -X POST " + d.esURL + "/_security/oauth2/token \\",
		"    -H 'Content-Type: application/json' \\",
		"    -d '{\"grant_type\":\"password\",\"username\":\"" + devUser + "\",\"password\":\"" + d.password + "\"}'",
		"  and present it as: -H 'Authorization: Bearer <access_token>'",
		"A UIAM session token for " + devUser + ", valid 24h:",
		"  curl -H 'Authorization: Bearer " + d.uiamToken + "' " + api + "/api/tasks",
		"===============================================================================",
		"",
	}
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}

// devEncryptionKey returns the development encryption key kept in
// dir/dev_encryption_key, generating it the first time.
func devEncryptionKey(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("dev: create data directory: %w", err)
	}
	path := filepath.Join(dir, "dev_encryption_key")
	b, err := os.ReadFile(path)
	switch {
	case err == nil && strings.TrimSpace(string(b)) != "":
		return strings.TrimSpace(string(b)), nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("dev: read encryption key: %w", err)
	}
	key, err := randomHex(32)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("dev: write encryption key: %w", err)
	}
	return key, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("dev: random: %w", err)
	}
	return hex.EncodeToString(b), nil
}
