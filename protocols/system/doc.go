// Package system is the "system" input: the gateway's own health, read from
// /proc and /sys — CPU use, memory, disk space, load, uptime and, where the
// kernel exposes them, temperatures from /sys/class/thermal.
//
// # Basics
//
// Every interval it emits, all stamped with the poll's scheduled time:
//
//	system                         load1, load5, load15, uptime_s, cpus,
//	                               mem_total_bytes, mem_available_bytes,
//	                               mem_used_percent, swap_total_bytes,
//	                               swap_used_bytes, cpu_usage_percent and
//	                               cpu_iowait_percent (from the second poll on)
//	disk,path=/                    total_bytes, free_bytes, used_percent
//	temperature,zone=…,type=…      celsius (one point per thermal zone)
//
// # Caveats
//
// CPU use is measured between two polls, so the first poll has none. A
// thermal zone that cannot be read (some report EIO while asleep) is
// skipped for that poll. The agent's own buffer depth is on the agent's
// /metrics, not here: an input cannot see the buffer.
//
// The package imports protocols and internal/confx only.
package system
