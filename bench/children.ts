/**
 * Child processes of the benchmark (the servers under test) and their memory.
 *
 * Every server is spawned as `process.execPath --import tsx <entry>` directly (no
 * npx / tsx wrapper), so the pid we hold is the node process that serves the
 * requests and /proc/<pid>/status is its own memory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const OUTPUT_LINES = 200;

export class ServerProcess {
  readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined = undefined;

  /** `output` keeps filling with the last lines the server prints. */
  constructor(readonly name: string, readonly proc: ChildProcess, readonly url: string, readonly output: string[]) {
    this.exited = new Promise((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) resolve(proc.exitCode);
      else proc.once('exit', (code) => resolve(code));
    });
    void this.exited.then((code) => {
      this.exitCode = code;
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get alive(): boolean {
    return this.exitCode === undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** The last lines the server printed (for error reports). */
  tail(lines = 40): string {
    return this.output.slice(-lines).join('\n');
  }

  /** SIGTERM (the servers close gracefully), SIGKILL after `graceMs`. */
  async stop(graceMs = 5_000): Promise<void> {
    if (!this.alive) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => {
      if (this.alive) this.proc.kill('SIGKILL');
    }, graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Every process spawned and not yet exited (also those still starting). */
const spawned = new Set<ChildProcess>();
/** The servers that started. */
const running = new Set<ServerProcess>();

/** Last resort, synchronous: used on exit, on signals and by the watchdog. */
export function killAllNow(): void {
  for (const proc of spawned) {
    try {
      proc.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

/** Graceful stop of every server, then SIGKILL for anything left. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((c) => c.stop(3_000)));
  killAllNow();
}

export interface StartOptions {
  name: string;
  /** V8 flags, as `npm start` gives them. */
  nodeFlags?: string[];
  /** Script relative to the project root: .js runs with plain node, .ts with `node --import tsx`. */
  entry: string;
  args?: string[];
  env: Record<string, string>;
  /** The server listens on 127.0.0.1:<port>. */
  port: number;
  /** A GET that answers 2xx once the server is ready. */
  readyPath: string;
  timeoutMs?: number;
}

/** A port nobody listens on right now (127.0.0.1). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts a server and resolves once GET <readyPath> answers 2xx. Rejects (with the
 * server's output) if it exits first or is not ready within the timeout.
 */
export async function startServer(options: StartOptions): Promise<ServerProcess> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  // Compiled JavaScript (what `npm start` runs) starts with plain node; TypeScript through tsx.
  const loader = [...(options.nodeFlags ?? []), ...(options.entry.endsWith('.js') ? [] : ['--import', 'tsx'])];
  const proc = spawn(process.execPath, [...loader, options.entry, ...(options.args ?? [])], {
    cwd: ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  spawned.add(proc);
  proc.once('exit', () => spawned.delete(proc));
  const output: string[] = [];
  const remember = (prefix: string) => (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line.trim()) continue;
      output.push(prefix + line);
      if (output.length > OUTPUT_LINES) output.shift();
    }
  };
  proc.stdout!.on('data', remember(''));
  proc.stderr!.on('data', remember('[stderr] '));
  let spawnError: Error | null = null;
  proc.once('error', (error) => {
    spawnError = error;
  });

  const url = `http://127.0.0.1:${options.port}`;
  const child = new ServerProcess(options.name, proc, url, output);
  const fail = (reason: string): never => {
    if (child.alive) proc.kill('SIGKILL');
    throw new Error(`${options.name} failed to start: ${reason}\n--- its output ---\n${output.join('\n') || '(none)'}`);
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (spawnError) fail((spawnError as Error).message);
    if (!child.alive) fail(`exited with ${proc.signalCode ?? `code ${proc.exitCode}`} before it was ready`);
    if (Date.now() > deadline) fail(`not ready after ${timeoutMs} ms (GET ${url}${options.readyPath})`);
    try {
      const response = await fetch(url + options.readyPath, { signal: AbortSignal.timeout(1_000) });
      await response.arrayBuffer();
      if (response.ok) break;
    } catch {
      /* not listening yet */
    }
    await sleep(100);
  }
  running.add(child);
  void child.exited.then(() => running.delete(child));
  return child;
}

/** What /proc says the process is: proves the pid is the node server, not a wrapper. */
export function describeProcess(pid: number): string {
  try {
    const exe = fs.readlinkSync(`/proc/${pid}/exe`);
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    return `pid ${pid}: ${path.basename(exe)} ${cmdline.slice(1).join(' ')}`;
  } catch {
    return `pid ${pid}`;
  }
}

function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number | null {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

/** The high-water marks read just before RssSampler reset them, per pid (kB). */
const hwmBeforeResets = new Map<number, number>();

/** Peak RSS over the process's whole life in MB: VmHWM, and what it was before each reset. */
export function lifetimePeakMb(pid: number): number | null {
  const kb = statusKb(pid, 'VmHWM');
  if (kb === null) return null;
  return Math.max(kb, hwmBeforeResets.get(pid) ?? 0) / 1024;
}

/**
 * Peak RSS of a process over one measurement. Resets the kernel's high-water mark
 * first (`echo 5 > /proc/<pid>/clear_refs`); when that works the peak is VmHWM at
 * the end, which catches spikes between samples. VmRSS is also sampled every 100 ms
 * and the larger figure wins (and stands alone when the reset is not permitted).
 */
export class RssSampler {
  private maxKb = 0;
  private timer: NodeJS.Timeout | null = null;
  private hwmReset = false;

  constructor(private readonly pid: number) {}

  start(): void {
    const before = statusKb(this.pid, 'VmHWM');
    if (before !== null) hwmBeforeResets.set(this.pid, Math.max(before, hwmBeforeResets.get(this.pid) ?? 0));
    try {
      fs.writeFileSync(`/proc/${this.pid}/clear_refs`, '5');
      this.hwmReset = true;
    } catch {
      this.hwmReset = false;
    }
    this.sample();
    this.timer = setInterval(() => this.sample(), 100);
  }

  private sample(): void {
    const kb = statusKb(this.pid, 'VmRSS');
    if (kb !== null && kb > this.maxKb) this.maxKb = kb;
  }

  /** Peak RSS in MB over the measurement. */
  stop(): { peakMb: number; method: 'VmHWM' | 'VmRSS samples' } {
    if (this.timer) clearInterval(this.timer);
    this.sample();
    const hwm = this.hwmReset ? statusKb(this.pid, 'VmHWM') : null;
    const peakKb = Math.max(this.maxKb, hwm ?? 0);
    return { peakMb: peakKb / 1024, method: hwm !== null ? 'VmHWM' : 'VmRSS samples' };
  }
}

/** /proc reports CPU time in USER_HZ ticks, 100 per second on Linux. */
const TICK_MS = 10;

function processCpuMs(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after the ")" that closes the command name: state is field 3, utime 14, stime 15
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    return null;
  }
}

function machineCpuMs(): { busy: number; total: number; steal: number } | null {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0];
    const values = line.trim().split(/\s+/).slice(1, 9).map(Number); // user nice system idle iowait irq softirq steal
    const total = values.reduce((a, b) => a + b, 0);
    const idle = values[3] + values[4];
    return { busy: (total - idle) * TICK_MS, total: total * TICK_MS, steal: values[7] * TICK_MS };
  } catch {
    return null;
  }
}

export interface CpuFigures {
  /** CPU time of the server process, ms. */
  serverMs: number | null;
  /** CPU time of this process (the load generator runs here), ms. */
  benchMs: number;
  /** CPU time of everything else on the machine (not steal), ms. */
  othersMs: number | null;
  /** Time the hypervisor gave this machine's CPUs to someone else (steal in /proc/stat), ms. */
  stealMs: number | null;
  /** CPU time the whole machine had (all cores), ms. */
  machineMs: number | null;
  wallMs: number;
}

/** CPU used over one measurement by the server, by the load generator (this process) and by everything else. */
export class CpuMeter {
  private server0: number | null = null;
  private bench0 = process.cpuUsage();
  private machine0 = machineCpuMs();
  private wall0 = performance.now();

  constructor(private readonly pid: number) {}

  start(): void {
    this.server0 = processCpuMs(this.pid);
    this.bench0 = process.cpuUsage();
    this.machine0 = machineCpuMs();
    this.wall0 = performance.now();
  }

  stop(): CpuFigures {
    const server1 = processCpuMs(this.pid);
    const bench = process.cpuUsage(this.bench0);
    const machine1 = machineCpuMs();
    const serverMs = server1 !== null && this.server0 !== null ? server1 - this.server0 : null;
    const benchMs = (bench.user + bench.system) / 1000;
    const busy = machine1 && this.machine0 ? machine1.busy - this.machine0.busy : null;
    const machineMs = machine1 && this.machine0 ? machine1.total - this.machine0.total : null;
    const stealMs = machine1 && this.machine0 ? machine1.steal - this.machine0.steal : null;
    const othersMs = busy !== null && serverMs !== null ? Math.max(0, busy - (stealMs ?? 0) - serverMs - benchMs) : null;
    return { serverMs, benchMs, othersMs, stealMs, machineMs, wallMs: performance.now() - this.wall0 };
  }
}
