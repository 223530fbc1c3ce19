package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/elasticsearch"
	"github.com/deputyhq/deputy/internal/keyring"
)

// keyWiring is what the key configuration yields.
type keyWiring struct {
	services []deputy.KeyService
	auth     deputy.Authenticator
	cipher   deputy.Cipher
	// hosts are the default credential hosts: the Elasticsearch host.
	hosts []string
}

// newKeyServices builds the key services, the API's authenticator and the
// cipher of stored secrets from the configuration. With no Elasticsearch
// configured, tasks are scheduled without credentials and the API is not
// authenticated.
func newKeyServices(cfg Config, log *slog.Logger) (*keyWiring, error) {
	var w keyWiring
	var err error
	if w.cipher, err = newCipher(cfg); err != nil {
		return nil, err
	}
	if cfg.Elasticsearch.URL == "" {
		if cfg.UIAM.URL != "" {
			return nil, errors.New("config: uiam: needs elasticsearch.url, which authenticates the API")
		}
		return &w, nil
	}

	u, err := url.Parse(cfg.Elasticsearch.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("config: elasticsearch.url: %q is not a URL", cfg.Elasticsearch.URL)
	}
	w.hosts = []string{u.Host}
	var ca []byte
	if cfg.Elasticsearch.CA != "" {
		if ca, err = os.ReadFile(cfg.Elasticsearch.CA); err != nil {
			return nil, fmt.Errorf("config: elasticsearch.ca: %w", err)
		}
	}
	es, err := elasticsearch.New(elasticsearch.Config{
		URL:              cfg.Elasticsearch.URL,
		Username:         cfg.Elasticsearch.Username,
		Password:         cfg.Elasticsearch.Password,
		APIKey:           cfg.Elasticsearch.APIKey,
		CA:               ca,
		UIAMSharedSecret: cfg.UIAM.SharedSecret,
		Logger:           log.With(slog.String("component", "elasticsearch")),
	})
	if err != nil {
		return nil, fmt.Errorf("config: elasticsearch: %w", err)
	}
	w.services = append(w.services, es)
	w.auth = es

	if cfg.UIAM.URL != "" {
		svc, err := newUIAM(cfg, log)
		if err != nil {
			return nil, err
		}
		w.services = append(w.services, svc)
	}
	if cfg.APIKeyType == "uiam" && len(w.services) < 2 {
		return nil, errors.New("config: api_key_type: uiam needs uiam.url")
	}
	return &w, nil
}

// newCipher returns the keyring of encryption_key and decryption_only_keys,
// or nil when no key is configured: scheduling with credentials then fails
// with a clear error from the manager.
func newCipher(cfg Config) (deputy.Cipher, error) {
	if cfg.EncryptionKey == "" {
		if len(cfg.DecryptionOnlyKeys) > 0 {
			return nil, errors.New("config: decryption_only_keys: needs encryption_key")
		}
		return nil, nil
	}
	active, err := keyring.ParseKey(cfg.EncryptionKey.Reveal())
	if err != nil {
		return nil, fmt.Errorf("config: encryption_key: %w", err)
	}
	var old [][]byte
	for i, s := range cfg.DecryptionOnlyKeys {
		k, err := keyring.ParseKey(s.Reveal())
		if err != nil {
			return nil, fmt.Errorf("config: decryption_only_keys[%d]: %w", i, err)
		}
		old = append(old, k)
	}
	kr, err := keyring.New(active, old...)
	if err != nil {
		return nil, fmt.Errorf("config: encryption_key: %w", err)
	}
	return kr, nil
}
