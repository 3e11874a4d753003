// Package pgschema holds what the PostgreSQL backends share about the
// relations they create: validating the names users give them, quoting
// those names and the ones derived from them, rendering the embedded schema
// templates, running a migration under an advisory lock, and converting
// durations to PostgreSQL's microseconds.
//
// It gives each backend the same rules for names; it does not know their
// defaults, their suffixes or their error sentinels, which each backend
// keeps, wrapping the [NameError] this package returns.
package pgschema
