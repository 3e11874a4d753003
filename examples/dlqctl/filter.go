package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/idemq/idemq/dlq"
)

// filterFlags are the flags that select entries, shared by list, count,
// replay and purge so that the same words select the same entries in each.
type filterFlags struct {
	reason, source, since, until string
}

func addFilterFlags(fs *flag.FlagSet) *filterFlags {
	f := &filterFlags{}
	fs.StringVar(&f.reason, "reason", "", "only entries parked for this `reason` (permanent, attempts_exhausted, fingerprint_mismatch, undecodable, ...)")
	fs.StringVar(&f.source, "source", "", "only entries from this `source` (queue or consumer name)")
	fs.StringVar(&f.since, "since", "", "only entries that last failed at or after `time`: RFC 3339, or a duration ago such as 90m, 2h, 7d")
	fs.StringVar(&f.until, "until", "", "only entries that last failed before `time`: RFC 3339, or a duration ago such as 90m, 2h, 7d")
	return f
}

// filter builds the dlq.Filter, with durations counted back from now.
func (f *filterFlags) filter(now time.Time) (dlq.Filter, error) {
	out := dlq.Filter{Reason: dlq.Reason(f.reason), Source: f.source}
	var err error
	if out.Since, err = parseWhen(f.since, now); err != nil {
		return dlq.Filter{}, fmt.Errorf("-since: %w", err)
	}
	if out.Until, err = parseWhen(f.until, now); err != nil {
		return dlq.Filter{}, fmt.Errorf("-until: %w", err)
	}
	if !out.Since.IsZero() && !out.Until.IsZero() && !out.Since.Before(out.Until) {
		// An empty range selects nothing; more likely the two were swapped.
		return dlq.Filter{}, fmt.Errorf("-since %s is not before -until %s", f.since, f.until)
	}
	return out, nil
}

// describe is the filter in words, to follow "entries" in messages such
// as "would purge": empty, or ` matching -reason "permanent"`.
func (f *filterFlags) describe() string {
	var parts []string
	for _, p := range []struct{ name, v string }{
		{"reason", f.reason}, {"source", f.source}, {"since", f.since}, {"until", f.until},
	} {
		if p.v != "" {
			parts = append(parts, "-"+p.name+" "+strconv.Quote(p.v))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " matching " + strings.Join(parts, " ")
}

// parseWhen reads an instant: empty for none, RFC 3339, or a duration
// before now ("2h", "45m", and "7d" for days, which time.ParseDuration
// lacks).
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		if t.IsZero() {
			// The zero time means no bound: it cannot be one.
			return time.Time{}, fmt.Errorf("%q is the zero time; give a later one", s)
		}
		return t, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration such as 2h or 7d", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration such as 2h or 7d", s)
		}
	}
	if d < 0 {
		return time.Time{}, fmt.Errorf("%q: a duration ago must not be negative", s)
	}
	return now.Add(-d), nil
}
