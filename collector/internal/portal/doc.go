// Package portal serves the public data portal's web pages. For the walking
// skeleton that is one placeholder page listing the known stations with
// links to their series in the public API; the real UI (built with npm,
// embedded) replaces it later behind the same Handler.
//
// Everything shown comes from sensors and agents, so it is untrusted: pages
// are rendered with html/template (contextual escaping) and served with a
// strict Content-Security-Policy.
//
// It reads stations through the narrow Stations interface and must not
// import the bus, ingest or api packages.
package portal
