// Folders each job has its own (empty) copy of, as pj-init mounts them (native/init/job-mounts.c):
// what the host keeps there, a job does not see.
const JOB_PRIVATE_DIRS = ['/tmp', '/dev/shm'];

/** The job-private folder `path` is in, if it is in one. */
export const inJobPrivateDir = (path: string): string | undefined => JOB_PRIVATE_DIRS.find((d) => path === d || path.startsWith(`${d}/`));
