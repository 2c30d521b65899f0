// bench/cpu.mjs: reading CPU time from /proc (node --test bench/cpu.test.mjs).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { cpuMs, descendants, parseStat, processTable, selfCpuMs } from "./cpu.mjs";

test("a stat line whose comm holds spaces and parentheses", () => {
  // 52 fields as proc(5) lists them; utime 250 and stime 50 ticks at 100 Hz are 3000 ms.
  const rest = ["S", "7", "7", "7", "0", "-1", "4194560", "10", "0", "0", "0", "250", "50", ...Array(37).fill("0")];
  const p = parseStat(`4242 (my (odd) proc) ${rest.join(" ")}\n`, 100);
  assert.deepEqual(p, { pid: 4242, comm: "my (odd) proc", ppid: 7, cpuMs: 3000 });
});

test("a line that is not a stat line is refused", () => {
  assert.throws(() => parseStat("hello", 100), /not a \/proc/);
  assert.throws(() => parseStat("1 (x) S 0", 100), /too few fields/);
});

test("a child's CPU time shows up under this process", async () => {
  // The child spins until it has used 300 ms of CPU by its own count, says so, and waits: no
  // wall-clock bound, so a busy machine only makes it slower.
  const child = spawn(process.execPath, ["-e", `
    while (process.cpuUsage().user < 300_000);
    process.stdout.write("spun\\n");
    process.stdin.resume();
  `], { stdio: ["pipe", "pipe", "inherit"] });
  try {
    const [chunk] = await once(child.stdout, "data");
    assert.equal(String(chunk), "spun\n");
    const mine = descendants(processTable(), process.pid).filter((p) => p.pid === child.pid);
    assert.equal(mine.length, 1, "the child is found among this process's descendants");
    // /proc counts in clock ticks (10 ms at the usual 100 Hz): allow one tick of rounding.
    assert.ok(cpuMs(mine) >= 290, `the child used ${cpuMs(mine)} ms of CPU by /proc, at least 300 by its own count`);
  } finally {
    child.stdin.end();
    await once(child, "exit");
  }
  assert.ok(selfCpuMs() > 0);
});
