package server

// startKine is a trimmed copy of github.com/k3s-io/kine/pkg/endpoint.Listen
// (Apache-2.0). The upstream package blank-imports every kine driver,
// including sqlite (cgo / modernc) and nats; the lab's k3s only needs the
// MySQL/MariaDB driver, so it registers just that one.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/k3s-io/kine/pkg/drivers"
	_ "github.com/k3s-io/kine/pkg/drivers/mysql"
	kineserver "github.com/k3s-io/kine/pkg/server"
	kinetls "github.com/k3s-io/kine/pkg/tls"
	"github.com/sirupsen/logrus"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

type kineConfig struct {
	Endpoint   string
	SocketPath string
	CAFile     string
	CertFile   string
	KeyFile    string
}

// startKine starts kine on a unix socket and returns the etcd endpoint URL.
func startKine(ctx context.Context, cfg kineConfig) (string, error) {
	if !strings.HasPrefix(cfg.Endpoint, "mysql://") {
		scheme, _, _ := strings.Cut(cfg.Endpoint, "://")
		return "", fmt.Errorf("the lab's k3s supports only a mysql:// datastore-endpoint (MariaDB/MySQL through kine), got scheme %q", scheme)
	}
	wg := &sync.WaitGroup{}
	bctx, bcancel := context.WithCancel(context.Background())
	_, backend, err := drivers.New(bctx, wg, &drivers.Config{
		Endpoint: cfg.Endpoint,
		BackendTLSConfig: kinetls.Config{
			CAFile:   cfg.CAFile,
			CertFile: cfg.CertFile,
			KeyFile:  cfg.KeyFile,
		},
		CompactInterval:  5 * time.Minute,
		CompactTimeout:   5 * time.Second,
		CompactMinRetain: 1000,
		CompactBatchSize: 1000,
		PollBatchSize:    500,
		PollInterval:     time.Second,
	})
	if err != nil {
		bcancel()
		return "", fmt.Errorf("failed to create kine driver for the configured datastore endpoint: %w", err)
	}
	if backend == nil {
		bcancel()
		return "", errors.New("kine returned no backend")
	}
	gs := grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             embed.DefaultGRPCKeepAliveMinTime,
			PermitWithoutStream: false,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    embed.DefaultGRPCKeepAliveInterval,
			Timeout: embed.DefaultGRPCKeepAliveTimeout,
		}),
		grpc.MaxConcurrentStreams(embed.DefaultMaxConcurrentStreams),
		grpc.MaxRecvMsgSize(int(embed.DefaultMaxRequestBytes)+512*1024),
		grpc.MaxSendMsgSize(math.MaxInt32),
	)
	go func() {
		<-ctx.Done()
		t := time.AfterFunc(2*time.Second, gs.Stop)
		defer t.Stop()
		gs.GracefulStop()
		bcancel()
	}()
	if err := backend.Start(bctx); err != nil {
		bcancel()
		return "", fmt.Errorf("starting kine backend (datastore): %w", err)
	}
	b := kineserver.New(backend, "unix", 5*time.Second, "3.6.11")
	b.Register(gs)
	if err := os.Remove(cfg.SocketPath); err != nil && !os.IsNotExist(err) {
		logrus.Warnf("failed to remove socket %s: %v", cfg.SocketPath, err)
	}
	l, err := (&net.ListenConfig{}).Listen(bctx, "unix", cfg.SocketPath)
	if err != nil {
		bcancel()
		return "", fmt.Errorf("kine listener: %w", err)
	}
	_ = os.Chmod(cfg.SocketPath, 0600)
	go func() {
		if err := gs.Serve(l); err != nil && !errors.Is(err, context.Canceled) {
			logrus.Errorf("kine GRPC server exited: %v", err)
		}
	}()
	ep := "unix://" + cfg.SocketPath
	logrus.Infof("Kine available at %s", ep)
	return ep, nil
}
