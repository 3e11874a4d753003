package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/idemq/idemq/dlq"
)

// dryRunShown is how many entries replay -dry-run lists.
const dryRunShown = 10

// noArgs and oneID check the positional arguments.
func noArgs(args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q (filters are flags: -reason, -source, -since, -until)", args[0])
	}
	return nil
}

func oneID(args []string) (string, error) {
	switch {
	case len(args) == 0:
		return "", usagef("missing <entry-id> (the ID column of list)")
	case len(args) > 1:
		return "", usagef("want one <entry-id>, got %d arguments", len(args))
	case args[0] == "":
		return "", usagef("empty <entry-id>")
	}
	return args[0], nil
}

func listFlags(fs *flag.FlagSet) func(context.Context, *app, []string) error {
	ff := addFilterFlags(fs)
	limit := fs.Int("limit", 50, "show at most `N` entries; the next page's cursor follows them")
	cursor := fs.String("cursor", "", "start after this `cursor`, printed as \"next:\" by the previous page")
	asJSON := fs.Bool("json", false, "print the page as JSON: {\"entries\": [...], \"next\": cursor}")
	return func(ctx context.Context, a *app, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		f, err := ff.filter(a.now())
		if err != nil {
			return usageError{err}
		}
		if *limit < 1 {
			return usagef("-limit must be at least 1, got %d", *limit)
		}
		store, err := a.conns.store(ctx)
		if err != nil {
			return err
		}
		page, err := store.List(ctx, f, *cursor, *limit)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(a.stdout, jsonPage{Entries: jsonEntries(page.Entries), Next: page.Next})
		}
		if len(page.Entries) == 0 {
			fmt.Fprintf(a.stdout, "no entries%s\n", ff.describe())
			return nil
		}
		if err := writeTable(a.stdout, page.Entries); err != nil {
			return err
		}
		if page.Next != "" {
			fmt.Fprintf(a.stdout, "next: %s\n", page.Next)
		}
		return nil
	}
}

func countFlags(fs *flag.FlagSet) func(context.Context, *app, []string) error {
	ff := addFilterFlags(fs)
	return func(ctx context.Context, a *app, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		f, err := ff.filter(a.now())
		if err != nil {
			return usageError{err}
		}
		store, err := a.conns.store(ctx)
		if err != nil {
			return err
		}
		n, err := store.Count(ctx, f)
		if err != nil {
			return err
		}
		fmt.Fprintln(a.stdout, n)
		return nil
	}
}

func showFlags(fs *flag.FlagSet) func(context.Context, *app, []string) error {
	asJSON := fs.Bool("json", false, "print the entry as JSON")
	return func(ctx context.Context, a *app, args []string) error {
		id, err := oneID(args)
		if err != nil {
			return err
		}
		store, err := a.conns.store(ctx)
		if err != nil {
			return err
		}
		e, err := store.Get(ctx, id)
		if errors.Is(err, dlq.ErrNotFound) {
			return fmt.Errorf("no entry with ID %q", id)
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(a.stdout, toJSON(e))
		}
		return writeEntry(a.stdout, e)
	}
}

func replayFlags(fs *flag.FlagSet) func(context.Context, *app, []string) error {
	ff := addFilterFlags(fs)
	to := fs.String("to", "", "where to publish: redis-stream:<stream>[?prefix=...] or pgqueue:<queue>[?table=...&notify=true] (required)")
	dryRun := fs.Bool("dry-run", false, "only print how many entries would be replayed, and the first of them")
	return func(ctx context.Context, a *app, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		f, err := ff.filter(a.now())
		if err != nil {
			return usageError{err}
		}
		t, err := parseTarget(*to)
		if err != nil {
			return usageError{err}
		}
		store, err := a.conns.store(ctx)
		if err != nil {
			return err
		}
		// Made even for a dry run, so that a target the driver refuses is
		// reported before anything would be replayed.
		pub, err := t.publisher(ctx, a.conns)
		if err != nil {
			var ue usageError
			if errors.As(err, &ue) {
				return err
			}
			return usageError{fmt.Errorf("-to %s: %w", t, err)}
		}
		if *dryRun {
			return dryRunReplay(ctx, a, store, f, t)
		}
		res, err := dlq.Replay(ctx, store, pub, f)
		// What was done is worth knowing even when Replay stopped early.
		fmt.Fprintf(a.stdout, "replayed %d, skipped %d\n", res.Replayed, res.Skipped)
		return err
	}
}

func dryRunReplay(ctx context.Context, a *app, store dlq.Store, f dlq.Filter, t target) error {
	n, err := store.Count(ctx, f)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "dry run: would replay %d %s to %s\n", n, plural(n, "entry", "entries"), t)
	if n == 0 {
		return nil
	}
	page, err := store.List(ctx, f, "", dryRunShown)
	if err != nil {
		return err
	}
	if err := writeTable(a.stdout, page.Entries); err != nil {
		return err
	}
	if more := n - len(page.Entries); more > 0 {
		fmt.Fprintf(a.stdout, "... and %d more\n", more)
	}
	return nil
}

func purgeFlags(fs *flag.FlagSet) func(context.Context, *app, []string) error {
	ff := addFilterFlags(fs)
	yes := fs.Bool("yes", false, "really purge; without it purge only counts what it would remove")
	return func(ctx context.Context, a *app, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		f, err := ff.filter(a.now())
		if err != nil {
			return usageError{err}
		}
		store, err := a.conns.store(ctx)
		if err != nil {
			return err
		}
		if !*yes {
			n, err := store.Count(ctx, f)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "would purge %d %s%s; add -yes to purge\n", n, plural(n, "entry", "entries"), ff.describe())
			return usagef("refusing to purge without -yes")
		}
		n, err := store.Purge(ctx, f)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "purged %d\n", n)
		return nil
	}
}

func deleteFlags(*flag.FlagSet) func(context.Context, *app, []string) error {
	return func(ctx context.Context, a *app, args []string) error {
		id, err := oneID(args)
		if err != nil {
			return err
		}
		store, err := a.conns.store(ctx)
		if err != nil {
			return err
		}
		err = store.Delete(ctx, id)
		if errors.Is(err, dlq.ErrNotFound) {
			return fmt.Errorf("no entry with ID %q", id)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "deleted %s\n", id)
		return nil
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
