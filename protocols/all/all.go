// Package all links every device protocol into a binary: each sub-package of
// protocols registers its input type in init, and a blank import here is what
// makes that init run. Only mains import this package, so that libraries and
// tests pull in exactly the protocols they use.
package all

import (
	_ "github.com/citysense/citysense/protocols/sim" // simulated smart-city stations
)
