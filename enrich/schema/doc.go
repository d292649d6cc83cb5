// Package schema is the "schema" enrichment stage: data contracts per
// measurement, declared in YAML, that say which fields a measurement has,
// their type, unit, meaning and plausible range, and which tags every point
// must carry. The contracts are also what the public API publishes, so
// that users know what a series means.
//
// A point that breaks its contract is never coerced. By default (action:
// flag) it is kept and flagged: a wrong type sets enrich.FlagSchemaType and
// a value outside min/max enrich.FlagSchemaRange in the field's <F>_qc; a
// missing required tag sets enrich.PointMissingTag and a missing required
// field enrich.PointMissingField in the point's qc. With action: quarantine
// the point is taken out of the batch and handed to the enrich.Quarantine
// sink with the reason.
//
// Measurements without a contract, and fields a contract does not declare,
// pass unchecked; flag fields (qc, *_qc) are never checked. Line protocol
// carries no units, so a contract's unit documents the field: put the units
// stage before schema when contracts describe normalised units.
//
// The package imports enrich, protocols and internal/confx only.
package schema
