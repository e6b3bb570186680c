#!/usr/bin/env node
// Compiles contracts/src/**/*.sol with the pinned solc-js (standard JSON, pinned settings) into
// contracts/out/<ContractName>.json ({contractName, sourceName, abi, bytecode, deployedBytecode}).
// Idempotent: skipped while the sources, the compiler, the settings and this script are unchanged
// (hash stamp in contracts/out/.build-stamp). Usage: node scripts/build_contracts.mjs [--force]
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import solc from "solc";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SRC = join(ROOT, "contracts", "src");
const OUT = join(ROOT, "contracts", "out");
const STAMP = join(OUT, ".build-stamp");
const NODE_MODULES = join(ROOT, "node_modules");

// Pinned compiler settings (also recorded in every artifact).
const SETTINGS = {
  evmVersion: "prague",
  optimizer: { enabled: true, runs: 20000 },
  viaIR: true,
  metadata: { bytecodeHash: "none" },
  outputSelection: {
    "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
  },
};

function solFiles(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? solFiles(join(dir, e.name)) : e.name.endsWith(".sol") ? [join(dir, e.name)] : []))
    .sort();
}

function sourceName(file) {
  return relative(ROOT, file).split(sep).join("/");
}

function findImports(path) {
  const file = join(NODE_MODULES, path);
  if (path.startsWith("@") && existsSync(file)) return { contents: readFileSync(file, "utf8") };
  const local = join(ROOT, path);
  if (existsSync(local)) return { contents: readFileSync(local, "utf8") };
  return { error: `import not found: ${path} (run the set-up: bash scripts/setup.sh)` };
}

function main() {
  const force = process.argv.includes("--force");
  if (!existsSync(join(NODE_MODULES, "@openzeppelin", "contracts", "package.json"))) {
    console.error("build_contracts: node_modules missing; run `bash scripts/setup.sh` (npm ci) first");
    process.exit(1);
  }
  const files = solFiles(SRC);
  const sources = Object.fromEntries(files.map((f) => [sourceName(f), { content: readFileSync(f, "utf8") }]));
  const ozVersion = JSON.parse(readFileSync(join(NODE_MODULES, "@openzeppelin", "contracts", "package.json"), "utf8")).version;

  const hash = createHash("sha256");
  hash.update(solc.version());
  hash.update(ozVersion);
  hash.update(JSON.stringify(SETTINGS));
  hash.update(readFileSync(fileURLToPath(import.meta.url)));
  for (const [name, { content }] of Object.entries(sources)) hash.update(name).update("\0").update(content);
  const stamp = hash.digest("hex");
  if (!force && existsSync(STAMP) && readFileSync(STAMP, "utf8").trim() === stamp) {
    console.log("build_contracts: contracts/out is up to date");
    return;
  }

  const input = { language: "Solidity", sources, settings: SETTINGS };
  const t0 = Date.now();
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const errors = (output.errors ?? []).filter((e) => e.severity === "error");
  for (const e of output.errors ?? []) {
    // Warnings about our own sources only (OpenZeppelin's transient-storage notice is expected).
    const own = (e.sourceLocation?.file ?? "").startsWith("contracts/");
    if (e.severity !== "error" && own) console.warn(e.formattedMessage);
  }
  if (errors.length) {
    for (const e of errors) console.error(e.formattedMessage);
    console.error(`build_contracts: ${errors.length} compilation error(s)`);
    process.exit(1);
  }

  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });
  let count = 0;
  for (const [src, contracts] of Object.entries(output.contracts)) {
    if (!src.startsWith("contracts/src/")) continue;
    for (const [name, c] of Object.entries(contracts)) {
      const artifact = {
        contractName: name,
        sourceName: src,
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
        deployedBytecode: "0x" + c.evm.deployedBytecode.object,
        compiler: { version: solc.version(), openzeppelin: ozVersion, settings: { ...SETTINGS, outputSelection: undefined } },
      };
      writeFileSync(join(OUT, `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
      count += 1;
    }
  }
  writeFileSync(STAMP, stamp + "\n");
  console.log(`build_contracts: compiled ${files.length} sources into ${count} artifacts in ${((Date.now() - t0) / 1000).toFixed(1)}s (solc ${solc.version()})`);
}

main();
