// Package config is the agent's configuration: the YAML schema (Config),
// the built-in default (Default), loading a file strictly (Load, via
// internal/confx, so an unknown key is an error naming file:line) and
// Validate, which reports every problem at once, each at its file:line.
//
// Input blocks stay yaml.Nodes until BuildInputs decodes each into the
// Input its type's factory returns, so that an input's keys are checked
// against that input's own struct, with the same file:line precision. An
// input's processors key is taken out of its block first and returned
// with it; Validate builds every processor chain once (without state) so
// that `citysense-agent check` reports their problems too.
//
// It imports protocols (the input registry), internal/confx, internal/cli
// and the agent's process package (to validate processors; it is pure); it
// must not import the rest of the agent, any protocol sub-package (mains
// link those through protocols/all) or the collector.
package config
