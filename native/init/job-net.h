// A job's own network namespace (job-net.c).
#pragma once

// Moves the caller into a new network namespace set up for the relay: loopback
// up, every IPv4 address local (so tproxy can hand any destination to the relay),
// outbound TCP to the relay, DNS to the relay's resolver port, anything else
// refused. 0, or -1 with a message on stderr.
int job_net_create(void);
