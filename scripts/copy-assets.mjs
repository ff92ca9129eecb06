#!/usr/bin/env node
// Part of the build (after tsc): the dashboard's page files (plain ES modules and CSS, no
// compile step) go beside the compiled server in dist/, which is all the package runs from.
import { cpSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const from = join(root, 'src', 'dashboard', 'public');
const to = join(root, 'dist', 'dashboard', 'public');
rmSync(to, { recursive: true, force: true });
cpSync(from, to, { recursive: true });
