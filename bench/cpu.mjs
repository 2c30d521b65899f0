// CPU time of processes, read from /proc, for bench/run.mjs's CPU-per-request figures: a
// process's utime + stime (every thread, user and kernel) in milliseconds.
import { readFileSync, readdirSync } from "node:fs";
import { spawnSync } from "node:child_process";

const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/** One /proc/<pid>/stat line: pid, comm, ppid and cpuMs (utime + stime). */
export function parseStat(stat, clkTck = CLK_TCK) {
  // comm may hold spaces and parentheses: the fields after it start after the last ')'.
  const open = stat.indexOf("(");
  const close = stat.lastIndexOf(")");
  if (open < 0 || close < open) throw new Error("not a /proc/<pid>/stat line");
  const fields = stat.slice(close + 2).split(" ");
  // fields[0] is field 3 of proc(5) (state): ppid is field 4, utime 14, stime 15.
  const [ppid, utime, stime] = [fields[1], fields[11], fields[12]].map(Number);
  if (![ppid, utime, stime].every(Number.isInteger)) throw new Error("a /proc/<pid>/stat line with too few fields");
  return { pid: Number(stat.slice(0, open).trim()), comm: stat.slice(open + 1, close), ppid, cpuMs: ((utime + stime) * 1000) / clkTck };
}

/** Every process now: pid, ppid, comm, cmdline (NUL-separated) and cpuMs. */
export function processTable() {
  const out = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      out.push({ ...parseStat(readFileSync(`/proc/${name}/stat`, "utf8")), cmdline: readFileSync(`/proc/${name}/cmdline`, "utf8") });
    } catch {
      // Gone between the listing and the read.
    }
  }
  return out;
}

/** `pid` and every process under it. */
export function descendants(table, pid) {
  const found = table.filter((p) => p.pid === pid);
  for (let i = 0; i < found.length; i++) found.push(...table.filter((p) => p.ppid === found[i].pid));
  return found;
}

export const cpuMs = (procs) => procs.reduce((sum, p) => sum + p.cpuMs, 0);

/** This Node process's own CPU time so far, in ms. */
export function selfCpuMs() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}
