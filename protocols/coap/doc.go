// Package coap is the "coap" input: a CoAP server (RFC 7252, UDP, on
// github.com/plgd-dev/go-coap/v3) that constrained sensor nodes POST their
// readings to.
//
// # Basics
//
//	POST coap://gw/write?precision=s        line protocol
//	POST coap://gw/<measurement>?tag=value  a JSON object (or array of
//	                                        objects): numbers and booleans
//	                                        become fields, nested objects
//	                                        are flattened with "_", "time"
//	                                        (Unix seconds or RFC 3339) is
//	                                        the timestamp
//
// The response is sent only after the points were accepted by the
// accumulator (in the agent: fsync'd in the buffer): for a confirmable
// request the ACK itself carries 2.04 Changed, so a node that got no ACK
// retransmits, and go-coap answers a retransmission it has already
// processed from its response cache instead of storing it again. A bad
// payload gets 4.00 with a diagnostic naming the bad line or key (the valid
// lines are stored), a refused write 5.03 with Max-Age 1, a body over
// max_body 4.13.
//
// The package imports protocols and internal/confx only.
package coap
