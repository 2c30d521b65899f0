// CPU time of processes, read from /proc, for bench/run.mjs's CPU-per-request figures: a
// process's utime + stime (every thread, user and kernel) in milliseconds.
import { readFileSync, readdirSync } from "node:fs";
import { spawnSync } from "node:child_process";

const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/** Every process now: pid, ppid, comm, cmdline (NUL-separated) and cpuMs. */
export function processTable() {
  const out = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // comm may hold spaces and parentheses: the fields after it start after the last ')'.
      const close = stat.lastIndexOf(")");
      const fields = stat.slice(close + 2).split(" ");
      out.push({
        pid: Number(name),
        comm: stat.slice(stat.indexOf("(") + 1, close),
        ppid: Number(fields[1]),
        cpuMs: ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK,
        cmdline: readFileSync(`/proc/${name}/cmdline`, "utf8"),
      });
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
