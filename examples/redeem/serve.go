package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// shutdownTimeout bounds how long requests in flight may take to finish
// once the service is asked to stop.
const shutdownTimeout = 10 * time.Second

// serve runs the service on cfg.addr until ctx is done.
func serve(ctx context.Context, cfg config, stdout io.Writer, logger *slog.Logger) error {
	be, err := openBackend(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer be.close()
	if cfg.seed {
		if err := seed(ctx, be.stock); err != nil {
			return err
		}
	}
	srv, err := newServer(be.stock, be.keys, serverOptions{Logger: logger})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "redeem: serving on http://%s with the %s store\n", ln.Addr(), cfg.store)
	return listen(ctx, ln, srv, be)
}

// listen serves srv on ln, with its background work and be's, until ctx
// is done; then it lets the requests in flight finish and stops the
// background work. It closes ln.
func listen(ctx context.Context, ln net.Listener, srv *server, be *backend) error {
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(srv.o.Logger.Handler(), slog.LevelWarn),
	}
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() {
		stopBackground()
		wg.Wait()
	}()
	wg.Go(func() { srv.maintain(bg) })
	if be.maintain != nil {
		wg.Go(func() { be.maintain(bg) })
	}

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
