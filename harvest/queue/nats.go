package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names on the server.
const (
	Stream        = "ONNX_TDB_HARVEST"
	SubjectPrefix = "onnx-tdb.harvest.shard."
	ErrorsPrefix  = "onnx-tdb.harvest.errors."
	Consumer      = "onnx-tdb-harvest-workers"
)

// DefaultAckWait is how long the server waits for a worker's ack (or
// in-progress ack) before it gives the shard to another worker; workers
// send an in-progress ack every AckWait/4 while a shard runs.
const DefaultAckWait = 30 * time.Second

// ErrUnreachable: no NATS server answers at the URL.
var ErrUnreachable = errors.New("nats server unreachable")

// Conn is a connection to a JetStream-enabled server.
type Conn struct {
	NC      *nats.Conn
	JS      jetstream.JetStream
	AckWait time.Duration
}

// Connect dials url (nats://host:port) and checks that JetStream is on.
func Connect(ctx context.Context, url string, ackWait time.Duration) (*Conn, error) {
	if ackWait <= 0 {
		ackWait = DefaultAckWait
	}
	host, _ := os.Hostname()
	nc, err := nats.Connect(url, nats.Name(fmt.Sprintf("onnx-tdb harvest %s/%d", host, os.Getpid())), nats.Timeout(5*time.Second),
		nats.MaxReconnects(-1), nats.RetryOnFailedConnect(false))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats %s: %w", url, err)
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(actx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats %s: JetStream not available (start the server with -js): %w", url, err)
	}
	return &Conn{NC: nc, JS: js, AckWait: ackWait}, nil
}

// Close drains and closes the connection.
func (c *Conn) Close() error {
	if c == nil || c.NC == nil {
		return nil
	}
	err := c.NC.Drain()
	for c.NC.IsDraining() {
		time.Sleep(10 * time.Millisecond)
	}
	c.NC.Close()
	return err
}

// Setup makes the work-queue stream and the workers' durable consumer.
// The coordinator (own true) sets the consumer's ack wait to its own; a
// worker uses the consumer as it finds it, adopting its ack wait.
func (c *Conn) Setup(ctx context.Context, own bool) (jetstream.Consumer, error) {
	_, err := c.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       Stream,
		Subjects:   []string{SubjectPrefix + ">"},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Duplicates: 10 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("nats: make stream %s: %w", Stream, err)
	}
	if !own {
		if cons, err := c.JS.Consumer(ctx, Stream, Consumer); err == nil {
			if info := cons.CachedInfo(); info != nil && info.Config.AckWait > 0 {
				c.AckWait = info.Config.AckWait
			}
			return cons, nil
		}
	}
	cons, err := c.JS.CreateOrUpdateConsumer(ctx, Stream, jetstream.ConsumerConfig{
		Durable:       Consumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 1000,
	})
	if err != nil {
		return nil, fmt.Errorf("nats: make consumer %s: %w", Consumer, err)
	}
	return cons, nil
}

// Bucket opens (making it when asked) the object store of a job.
func (c *Conn) Bucket(ctx context.Context, job string, create bool) (jetstream.ObjectStore, error) {
	name := "onnx-tdb-harvest-" + job[:16]
	if create {
		obs, err := c.JS.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: name, Storage: jetstream.FileStorage})
		if err != nil {
			return nil, fmt.Errorf("nats: object store %s: %w", name, err)
		}
		return obs, nil
	}
	obs, err := c.JS.ObjectStore(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("nats: object store %s of job %s: %w", name, job, err)
	}
	return obs, nil
}

// DeleteBucket removes a job's object store.
func (c *Conn) DeleteBucket(ctx context.Context, job string) error {
	err := c.JS.DeleteObjectStore(ctx, "onnx-tdb-harvest-"+job[:16])
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	return err
}

// Publish queues a shard, deduplicated by its id and run (a coordinator's
// retries within one run queue it once; a resumed job, a new run, queues
// what is missing again).
func (c *Conn) Publish(ctx context.Context, s Shard, run string) error {
	_, err := c.JS.Publish(ctx, SubjectPrefix+s.Job, s.Encode(), jetstream.WithMsgID(s.Job+"/"+run+"/"+s.ID()))
	if err != nil {
		return fmt.Errorf("nats: publish shard %s of job %s: %w", s.ID(), s.Job, err)
	}
	return nil
}

// Purge drops the queued shards of a job (a resumed job queues what is
// missing again).
func (c *Conn) Purge(ctx context.Context, job string) error {
	st, err := c.JS.Stream(ctx, Stream)
	if err != nil {
		return fmt.Errorf("nats: stream %s: %w", Stream, err)
	}
	return st.Purge(ctx, jetstream.WithPurgeSubject(SubjectPrefix+job))
}

// Embedded is an in-process NATS server with JetStream, on loopback only.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts a server storing JetStream data under dir, listening
// on 127.0.0.1 at port (0: any free port).
func StartEmbedded(dir string, port int) (*Embedded, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("nats store %s: %w", dir, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "onnx-tdb-harvest",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 8 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after 15s (store %s)", dir)
	}
	return &Embedded{srv: srv}, nil
}

// URL is the client URL of the server.
func (e *Embedded) URL() string { return e.srv.ClientURL() }

// Close shuts the server down and waits for it.
func (e *Embedded) Close() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}
