#!/usr/bin/env node
// The k8s-ha command. From a clone (tsx installed) it runs the TypeScript
// sources directly; from an installed package it runs the compiled dist/.
import { existsSync } from 'node:fs';

const src = new URL('../src/cli/main.ts', import.meta.url);
const dist = new URL('../dist/src/cli/main.js', import.meta.url);
let main;
if (existsSync(src)) {
  try {
    const { register } = await import('tsx/esm/api');
    register();
    main = await import(src.href);
  } catch (e) {
    if (!existsSync(dist)) throw e;
  }
}
main ??= await import(dist.href);
await main.run();
