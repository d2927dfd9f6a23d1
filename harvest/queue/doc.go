// Package queue carries a harvest's shards over NATS JetStream: a
// work-queue stream of shard messages that workers pull one at a time with
// explicit acks (sending in-progress acks while a shard runs), an object
// store per job for the job description, its tokens and every finished
// shard's partial state (stored under the shard's id, so a shard finished
// twice is stored once), and an embedded server for the default,
// nothing-to-install case.
//
// On the harvest data path it sits between the coordinator, which publishes
// shards and waits for their partials, and the workers, which compute them.
package queue
