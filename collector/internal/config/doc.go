// Package config is the collector's configuration: the Config struct with its
// YAML keys, the compiled-in defaults (Default) and Load, which decodes a file
// strictly through internal/confx and validates it, reporting every problem
// as file:line: path: message.
//
// It owns the meaning of each key and its limits. It must not import the
// collector's runtime packages (bus, store, ingest, api): they are configured
// from the values here by package collector, never the other way round.
package config
