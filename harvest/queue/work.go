package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrRefused: a worker refuses a shard it must not compute (its model
// differs from the job's); the shard goes back to the queue for another.
var ErrRefused = errors.New("shard refused")

// Handler computes one shard and stores its partial before returning nil.
type Handler func(ctx context.Context, s Shard) error

// Work pulls shards one at a time and runs h on each, sending in-progress
// acks every AckWait/4 while it runs, and acks the shard when h returns
// nil. When h fails, the shard is handed back (redelivered to a worker at
// once if h refused it, after the ack wait otherwise), the error is
// published on the job's error subject for the coordinator to show, and
// Work returns it. It returns nil when ctx ends (the shard being computed,
// if any, is handed back).
func (c *Conn) Work(ctx context.Context, cons jetstream.Consumer, h Handler) error {
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) {
				time.Sleep(100 * time.Millisecond) // the server or the consumer is (re)starting
				continue
			}
			return fmt.Errorf("nats: fetch a shard: %w", err)
		}
		for msg := range batch.Messages() {
			if err := c.handle(ctx, msg, h); err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) &&
			!errors.Is(err, jetstream.ErrNoHeartbeat) && !errors.Is(err, nats.ErrNoResponders) && !strings.Contains(err.Error(), "timeout") {
			return fmt.Errorf("nats: fetch a shard: %w", err)
		}
	}
	return nil
}

func (c *Conn) handle(ctx context.Context, msg jetstream.Msg, h Handler) error {
	s, err := DecodeShard(msg.Data())
	if err != nil {
		msg.TermWithReason(err.Error())
		return nil // a bad message is dropped, not fatal to the worker
	}
	stop := keepAlive(msg, c.AckWait/4)
	err = h(ctx, s)
	stop()
	switch {
	case err == nil:
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if aerr := msg.DoubleAck(actx); aerr != nil && ctx.Err() == nil {
			// The partial is stored; a lost ack only means the shard runs again and is found done.
			return nil
		}
		return nil
	case ctx.Err() != nil:
		msg.Nak()
		return nil
	case errors.Is(err, ErrRefused):
		msg.NakWithDelay(time.Second)
	default:
		msg.NakWithDelay(c.AckWait)
	}
	c.NC.Publish(ErrorsPrefix+s.Job, []byte(fmt.Sprintf("worker %s: shard %s: %v", c.NC.Opts.Name, s.ID(), err)))
	c.NC.Flush()
	return fmt.Errorf("shard %s of job %s: %w", s.ID(), s.Job, err)
}

// keepAlive sends in-progress acks every d until stop is called.
func keepAlive(msg jetstream.Msg, d time.Duration) (stop func()) {
	if d <= 0 {
		d = time.Second
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				msg.InProgress()
			}
		}
	}()
	return func() { close(done); <-finished }
}

// Done lists which shards of a pass have their partial stored.
func Done(ctx context.Context, obs jetstream.ObjectStore, pass int) (map[string]bool, error) {
	infos, err := obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nats: list stored partials: %w", err)
	}
	prefix := fmt.Sprintf("p%d/", pass)
	out := map[string]bool{}
	for _, in := range infos {
		if strings.HasPrefix(in.Name, prefix) && !in.Deleted {
			out[in.Name] = true
		}
	}
	return out, nil
}
