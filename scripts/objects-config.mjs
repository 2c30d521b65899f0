#!/usr/bin/env node
// The objects' Worker's configuration for one run or deploy: wrangler.objects.toml with the
// front's settings in its [vars] (wrangler.toml's [vars], then the `NAME=VALUE` overrides given),
// written in a folder of its own with its `main` made absolute, and (when given) its secrets in a
// `.dev.vars` beside it, where `wrangler dev` reads them and shows each as "(hidden)". keaplink is
// two Workers (README, "Deploying"); `wrangler dev`'s `--var` and `--env-file` reach only the
// first of the Workers it runs, so the second gets its settings this way.
//
//   node scripts/objects-config.mjs <folder> [NAME=VALUE ...]   (prints the config's path)
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const tomlString = (v) => JSON.stringify(String(v));

/** `NAME = "value"` pairs of a TOML file's [vars] table (keaplink's settings are all strings). */
export function varsOf(toml) {
  const out = {};
  let inVars = false;
  for (const line of toml.split("\n")) {
    if (/^\s*\[/.test(line)) inVars = line.trim() === "[vars]";
    const m = inVars && line.match(/^([A-Z0-9_]+)\s*=\s*("(?:[^"\\]|\\.)*")/);
    if (m) out[m[1]] = JSON.parse(m[2]);
  }
  return out;
}

/** wrangler.objects.toml with `vars` as its [vars]. */
export function withVars(toml, vars, root = ROOT) {
  const out = [];
  let inVars = false;
  for (const line of toml.split("\n")) {
    if (/^\s*\[/.test(line)) {
      inVars = line.trim() === "[vars]";
      out.push(line);
      if (inVars) for (const [k, v] of Object.entries(vars)) out.push(`${k} = ${tomlString(v)}`);
      continue;
    }
    if (inVars && /^[A-Z0-9_]+\s*=/.test(line)) continue;
    out.push(line.replace(/^main = "(.*)"$/, (_, p) => `main = ${tomlString(join(root, p))}`));
  }
  return out.join("\n");
}

/** Writes the objects' config into `dir`; answers its path. */
export async function writeObjectsConfig({ dir, vars = {}, secrets, root = ROOT }) {
  const front = varsOf(await readFile(join(root, "wrangler.toml"), "utf8"));
  const template = await readFile(join(root, "wrangler.objects.toml"), "utf8");
  await mkdir(dir, { recursive: true });
  const path = join(dir, "wrangler.objects.toml");
  await writeFile(path, withVars(template, { ...front, ...vars }, root));
  if (secrets) {
    const lines = Object.entries(secrets).map(([k, v]) => `${k}=${v}\n`).join("");
    await writeFile(join(dir, ".dev.vars"), lines, { mode: 0o600 });
  }
  return path;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [dir, ...pairs] = process.argv.slice(2);
  if (!dir) {
    console.error("usage: node scripts/objects-config.mjs <folder> [NAME=VALUE ...]");
    process.exit(2);
  }
  const vars = Object.fromEntries(pairs.map((p) => [p.slice(0, p.indexOf("=")), p.slice(p.indexOf("=") + 1)]));
  console.log(await writeObjectsConfig({ dir, vars }));
}
