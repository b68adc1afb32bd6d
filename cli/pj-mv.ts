#!/usr/bin/env node
// `pj-mv <pid|job> <host>`: moves a running job. The migrator arrives with the
// jobs issue; until then this says so plainly instead of pretending.
import { PjError, codes } from '../common/errors.js';
import { reportError } from './output.js';

const [target, host] = process.argv.slice(2);
if (!target || !host) {
  process.stderr.write('usage: pj-mv <pid|job> <host>\n');
  process.exitCode = 2;
} else {
  reportError(new PjError(codes.NOT_IMPLEMENTED, `cannot move ${target} to ${host}: job migration is not built yet (jobs and pj run come first)`));
}
