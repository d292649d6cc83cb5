// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)) for the two mains: READY=1 once the service runs,
// WATCHDOG=1 at half the interval systemd asks for (WatchdogSec=), and
// STOPPING=1 when the shutdown begins. Each message is one datagram to the
// unix socket named by $NOTIFY_SOCKET.
//
// It uses the standard library only and must not import anything of
// CitySense, so that the agent's import graph stays small. Outside systemd
// (no $NOTIFY_SOCKET) everything here is a no-op.
package sdnotify
