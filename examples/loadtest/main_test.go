package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// short is a run small enough for a test, with the flags' defaults
// otherwise.
func short(d time.Duration, f, admission string) config {
	return config{duration: d, rate: 200, burst: 4, fault: f, admission: admission,
		inflight: 64, capacity: 16, budget: time.Second, dup: 0.01}
}

func TestReport(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	rep, err := run(t.Context(), &out, short(2*time.Second, "none", "on"))
	require.NoError(t, err)
	got := out.String()
	for _, want := range []string{
		"load ", "fault ", "stack ", "dependency ",
		"   1.0s  in ", // a progress line
		"report\n", "published ", "processed (acked) ", "throughput ",
		"accepted latency    p50 ", " p95 ", " p99 ", "end-to-end latency ",
		"queue lag           max ", ", final ",
		"retries ", "admission rejects ", "breaker ", "dead-lettered ", "DLQ rate ", "duplicates skipped ",
		"green zone: ",
	} {
		require.Contains(t, got, want)
	}
	require.True(t, strings.Contains(got, "green zone: GREEN\n") || strings.Contains(got, "green zone: NOT GREEN\n"), got)

	require.Positive(t, rep.Published)
	require.LessOrEqual(t, rep.Processed, rep.Published)
	require.Equal(t, rep.Published-rep.Processed, rep.Unfinished, "every copy is acked once, or still unfinished")
	require.Positive(t, rep.Accepted.N)
	require.Positive(t, rep.Throughput)
	for name, s := range map[string]summary{"accepted": rep.Accepted, "waiting": rep.Wait, "end-to-end": rep.EndToEnd} {
		require.LessOrEqual(t, s.P50, s.P95, name)
		require.LessOrEqual(t, s.P95, s.P99, name)
		require.LessOrEqual(t, s.P99, s.Max, name)
	}
	// The dependency takes at least 5ms, and accepted work includes it.
	require.GreaterOrEqual(t, rep.Accepted.P50, baseLatency)
	require.LessOrEqual(t, rep.LagFinal, rep.Elapsed)
	require.Len(t, rep.Checks, 3)
	require.GreaterOrEqual(t, rep.DLQRate, 0.0)
	require.LessOrEqual(t, rep.DLQRate, 1.0)
}

// With the dependency slowed, admission control rejects the excess; without
// it nothing is rejected. Times are not asserted: they depend on the
// machine, and the figures are in the command's output.
func TestSlowDependencyAdmission(t *testing.T) {
	t.Parallel()
	for _, admission := range []string{"on", "off"} {
		t.Run(admission, func(t *testing.T) {
			t.Parallel()
			var out strings.Builder
			rep, err := run(t.Context(), &out, short(3*time.Second, "slow", admission))
			require.NoError(t, err)
			require.Positive(t, rep.Published)
			require.LessOrEqual(t, rep.Processed, rep.Published)
			if admission == "on" {
				require.Positive(t, rep.AdmissionRejects, out.String())
				require.Positive(t, rep.DeferredAdmission, out.String())
			} else {
				require.Zero(t, rep.AdmissionRejects, out.String())
				require.Contains(t, out.String(), "(no admission)")
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	good := short(time.Second, "none", "on")
	for _, tc := range []struct {
		name   string
		modify func(*config)
		want   string
	}{
		{"fault", func(c *config) { c.fault = "flaky" }, "unknown -fault"},
		{"admission", func(c *config) { c.admission = "maybe" }, "unknown -admission"},
		{"duration", func(c *config) { c.duration = 0 }, "-duration"},
		{"rate", func(c *config) { c.rate = 0 }, "-rate"},
		{"burst", func(c *config) { c.burst = 0.5 }, "-burst"},
		{"inflight", func(c *config) { c.inflight = 0 }, "-inflight"},
		{"capacity", func(c *config) { c.capacity = 0 }, "-capacity"},
		{"budget", func(c *config) { c.budget = -time.Second }, "-budget"},
		{"dup", func(c *config) { c.dup = 1 }, "-dup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := good
			tc.modify(&c)
			_, err := run(t.Context(), &strings.Builder{}, c)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestProfile(t *testing.T) {
	t.Parallel()
	p := profile{base: 100, burst: 4}
	require.Equal(t, 100.0, p.rate(0))
	require.Equal(t, 100.0, p.rate(rampUpAt-0.01))
	require.Equal(t, 400.0, p.rate((burstAt+burstEnd)/2))
	require.Equal(t, 100.0, p.rate(rampDownAt))
	require.Equal(t, 100.0, p.rate(1))
	// The ramps are continuous and within the bounds.
	for f := 0.0; f <= 1; f += 0.001 {
		r := p.rate(f)
		require.GreaterOrEqual(t, r, 100.0)
		require.LessOrEqual(t, r, 400.0)
		require.InDelta(t, r, p.rate(f+0.001), 3.01, "at %g", f) // the steepest ramp: 300/s over 10%
	}
}

func TestFaultWindows(t *testing.T) {
	t.Parallel()
	require.Equal(t, conditions{}, faultNone.at(0.45))
	require.Equal(t, conditions{}, faultSlow.at(faultAt-0.01))
	require.Equal(t, conditions{slow: true}, faultSlow.at(faultAt))
	require.Equal(t, conditions{}, faultSlow.at(faultEnd))
	require.Equal(t, conditions{dead: true}, faultDead.at((faultAt+faultEnd)/2))
	for _, b := range errorBursts {
		require.Equal(t, conditions{errorRate: 0.5}, faultErrors.at(b[0]))
		require.Equal(t, conditions{}, faultErrors.at(b[1]))
	}
}
