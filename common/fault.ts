// Fault injection for the tests of "exactly one copy": PJ_FAULT=<point> in an
// agent's environment makes it fail for real at that point (the process dies
// by SIGKILL, or the data is damaged), as a crash or a bad link would.
export function faultActive(point: string): boolean {
  return process.env.PJ_FAULT === point;
}

/** Dies on the spot, as a manager killed at this moment would. */
export function crashPoint(point: string): void {
  if (faultActive(point)) process.kill(process.pid, 'SIGKILL');
}
