// Package all registers every enrichment stage type. Only mains (and tests
// that build whole chains) import it, so that a program links exactly the
// stages it can configure.
package all

import (
	// Each import registers one stage type in its init function.
	_ "github.com/citysense/citysense/enrich/aqi"
	_ "github.com/citysense/citysense/enrich/geo"
	_ "github.com/citysense/citysense/enrich/privacy"
	_ "github.com/citysense/citysense/enrich/quality"
	_ "github.com/citysense/citysense/enrich/registry"
	_ "github.com/citysense/citysense/enrich/schema"
	_ "github.com/citysense/citysense/enrich/units"
)
