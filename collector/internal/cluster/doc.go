// Package cluster is the collector's membership: which nodes exist, which
// are alive, and what each one advertises (its API, NATS route and client
// URLs, version and the partitions it serves). It wraps
// github.com/hashicorp/memberlist (SWIM gossip with encryption) and is the
// only package of the module that imports it; the rest of the collector
// sees Member values and a Changes signal.
//
// # Basics
//
// Start binds the gossip port (TCP and UDP), joins the seeds (a DNS name
// joins every address it resolves to) and the addresses kept in the state
// file, and returns after that first attempt. A node nobody answers runs
// alone and retries in the background, with exponential backoff from
// 0.5 s to 30 s plus jitter, logging at most every 10 s, for as long as it
// knows no other member: a first node, a node whose seeds are still
// booting, and a node left alone by a partition all find the cluster when
// it appears. memberlist never rejoins a node it declared dead; this retry
// is what heals a partition.
//
// Members reports everyone known with a state (alive, suspect, dead,
// left); Live the alive and suspect ones, self included. Changes fires,
// coalesced, on joins, leaves, failures, suspicions and metadata updates.
// After each change the addresses of the other live members go to
// Config.StateFile (temporary file, fsync, rename), so a restart needs no
// seed; when no other member is live the file keeps the last list.
//
// Metadata is JSON of at most 512 bytes (memberlist's limit); Start and
// UpdateMeta refuse more with ErrMetaTooLarge. A typical Meta takes about
// 130 bytes, which leaves room for a Ready bitmap of ~1,400 partitions.
//
// # Timing (measured on loopback, 3 nodes, on a busy 2-core machine)
//
// Three nodes see each other 0.1 s (profile "local") or 0.2 s ("lan")
// after they start; a metadata update reaches the others in ~0.1 s. After
// a crash (Shutdown without Leave, like kill -9) a node is suspect after
// 1.5–2.8 s and dead at both survivors after 4.5–4.9 s (local) or
// 5.8–6.8 s (lan). A Leave shows as "left" within ~0.1 s. Dead and left
// members are forgotten after memberlist's GossipToTheDeadTime (15 s
// local, 30 s lan).
//
// # Caveats
//
// memberlist 0.7.0 keeps a node's state to itself: the Node values it hands
// out always say alive, and its event hooks do not tell a failure from a
// leave. So the state here is derived: "suspect" means this node's own
// probe failed (memberlist logs that line, and the logger adapter watches
// for it) and clears on the next ack; suspicions raised by other nodes'
// probes are not seen, so in large clusters a node may go from alive to
// dead. "left" means the node sent a leaving notice (a reliable user
// message to every live member) before memberlist's leave; if the notice
// was lost it shows as "dead".
//
// A restarted node must keep its name and address: memberlist refuses a
// known name at a new address until the old entry is forgotten. Nodes
// with different secret keys cannot talk; the rejected side logs
// decryption errors. memberlist's Shutdown does not wait for a probe in
// flight, which ends within one probe interval.
//
// It must not import bus, store, ingest, api or portal: the collector
// wires membership to them.
package cluster
