/**
 * V8 flags smartproc's server runs with. A request allocates a few kilobytes of
 * short-lived objects; 4 MB semi-spaces (instead of 16) keep them in the CPU cache.
 * Measured (docs/operations.md): about twice the GET req/s and peak RSS 110-130 MB
 * instead of about 210 MB. Given on the node command line (`npm start`, the
 * `smartproc` shebang, the benchmark); set at run time only as a fallback, which V8
 * does not always honour.
 */
export const NODE_FLAGS = ['--max-semi-space-size=4'];
